using System.Collections.Frozen;
using LmsProxy.Loading;

namespace LmsProxy.Models;

/// <summary>
/// What the proxy believes LM Studio has: refreshed in the background, corrected at once by loads and by
/// LM Studio's "not loaded" answers. <see cref="IsLoaded"/> is the warm path: a lock-free set lookup.
/// </summary>
public sealed class ModelRegistry(TimeProvider time)
{
    private readonly Lock _writeLock = new();
    private volatile State _state = new(ModelCatalog.Empty, FrozenSet<string>.Empty, null);
    private long _version;

    private sealed record State(ModelCatalog Catalog, FrozenSet<string> LoadedNames, DateTimeOffset? RefreshedAt);

    public ModelCatalog Catalog => _state.Catalog;

    /// <summary>When the catalog was last read from LM Studio; null before the first successful read.</summary>
    public DateTimeOffset? RefreshedAt => _state.RefreshedAt;

    public bool IsLoaded(string name) => _state.LoadedNames.Contains(name);

    /// <summary>Changes with every write; read it before asking LM Studio for the catalog, pass it to <see cref="Update"/>.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>
    /// Takes a catalog read from LM Studio, unless the registry changed while it was being read: a load that
    /// finished meanwhile must not be undone by an older answer. The next read applies.
    /// </summary>
    public bool Update(ModelCatalog catalog, long versionBeforeRead)
    {
        lock (_writeLock)
        {
            if (_version != versionBeforeRead) return false;
            Write(Build(catalog, time.GetUtcNow()));
            return true;
        }
    }

    /// <summary>Reads LM Studio's catalog and takes it (as <see cref="Update"/> does); returns what LM Studio said.</summary>
    public async Task<ModelCatalog> RefreshAsync(LmStudioApi api, CancellationToken cancellationToken)
    {
        var version = Version;
        var catalog = await api.GetCatalogAsync(cancellationToken);
        Update(catalog, version);
        return catalog;
    }

    public void MarkLoaded(string key, string instanceId)
    {
        lock (_writeLock)
        {
            var model = _state.Catalog.Resolve(key);
            if (model is null) return;
            var ids = model.LoadedInstanceIds.Contains(instanceId) ? model.LoadedInstanceIds : [.. model.LoadedInstanceIds, instanceId];
            Write(Build(_state.Catalog.With(model.Key, ids), _state.RefreshedAt));
        }
    }

    /// <summary>LM Studio said the model is not loaded: forget every instance of it.</summary>
    public void MarkNotLoaded(string name)
    {
        lock (_writeLock)
        {
            var model = _state.Catalog.Resolve(name);
            if (model is null || !model.IsLoaded) return;
            Write(Build(_state.Catalog.With(model.Key, []), _state.RefreshedAt));
        }
    }

    private void Write(State state)
    {
        _state = state;
        Interlocked.Increment(ref _version);
    }

    private static State Build(ModelCatalog catalog, DateTimeOffset? refreshedAt)
    {
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var model in catalog.Models.Where(m => m.IsLoaded))
        {
            names.Add(model.Key);
            names.UnionWith(model.LoadedInstanceIds);
            var slash = model.Key.LastIndexOf('/');
            if (slash >= 0 && ReferenceEquals(catalog.Resolve(model.Key[(slash + 1)..]), model)) names.Add(model.Key[(slash + 1)..]);
        }
        return new State(catalog, names.ToFrozenSet(StringComparer.OrdinalIgnoreCase), refreshedAt);
    }
}
