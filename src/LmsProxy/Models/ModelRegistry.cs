using System.Collections.Frozen;

namespace LmsProxy.Models;

/// <summary>
/// What the proxy believes LM Studio has: refreshed in the background, corrected at once by loads and by
/// LM Studio's "not loaded" answers. <see cref="IsLoaded"/> is the warm path: a lock-free set lookup.
/// </summary>
public sealed class ModelRegistry(TimeProvider time)
{
    private readonly Lock _writeLock = new();
    private volatile State _state = new(ModelCatalog.Empty, FrozenSet<string>.Empty, null);

    private sealed record State(ModelCatalog Catalog, FrozenSet<string> LoadedNames, DateTimeOffset? RefreshedAt);

    public ModelCatalog Catalog => _state.Catalog;

    /// <summary>When the catalog was last read from LM Studio; null before the first successful read.</summary>
    public DateTimeOffset? RefreshedAt => _state.RefreshedAt;

    public bool IsLoaded(string name) => _state.LoadedNames.Contains(name);

    public void Update(ModelCatalog catalog)
    {
        lock (_writeLock) _state = Build(catalog, time.GetUtcNow());
    }

    public void MarkLoaded(string key, string instanceId)
    {
        lock (_writeLock)
        {
            var model = _state.Catalog.Resolve(key);
            if (model is null) return;
            var ids = model.LoadedInstanceIds.Contains(instanceId) ? model.LoadedInstanceIds : [.. model.LoadedInstanceIds, instanceId];
            _state = Build(_state.Catalog.With(model.Key, ids), _state.RefreshedAt);
        }
    }

    /// <summary>LM Studio said the model is not loaded: forget every instance of it.</summary>
    public void MarkNotLoaded(string name)
    {
        lock (_writeLock)
        {
            var model = _state.Catalog.Resolve(name);
            if (model is null || !model.IsLoaded) return;
            _state = Build(_state.Catalog.With(model.Key, []), _state.RefreshedAt);
        }
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
