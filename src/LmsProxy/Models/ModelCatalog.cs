namespace LmsProxy.Models;

/// <summary>One downloaded model as LM Studio lists it, with the identifiers of its loaded instances.</summary>
public sealed record CatalogModel(string Key, string Type, IReadOnlyList<string> LoadedInstanceIds)
{
    public bool IsLoaded => LoadedInstanceIds.Count > 0;
}

/// <summary>LM Studio's downloaded models at one moment, and how client-sent names map onto them.</summary>
public sealed class ModelCatalog
{
    public static readonly ModelCatalog Empty = new([]);

    private readonly Dictionary<string, CatalogModel> _byName = new(StringComparer.OrdinalIgnoreCase);

    public ModelCatalog(IReadOnlyList<CatalogModel> models)
    {
        Models = models;
        // Exact keys and instance ids win; a bare name ("qwen3-8b" for "qwen/qwen3-8b") only when unambiguous.
        var bare = new Dictionary<string, CatalogModel?>(StringComparer.OrdinalIgnoreCase);
        foreach (var model in models)
        {
            _byName[model.Key] = model;
            foreach (var id in model.LoadedInstanceIds) _byName.TryAdd(id, model);
            var slash = model.Key.LastIndexOf('/');
            if (slash >= 0)
            {
                var name = model.Key[(slash + 1)..];
                bare[name] = bare.ContainsKey(name) ? null : model;
            }
        }
        foreach (var (name, model) in bare)
        {
            if (model is not null) _byName.TryAdd(name, model);
        }
    }

    public IReadOnlyList<CatalogModel> Models { get; }

    /// <summary>The model a client-sent name refers to; "key@quant" resolves to its key.</summary>
    public CatalogModel? Resolve(string name)
    {
        if (_byName.TryGetValue(name, out var model)) return model;
        var at = name.IndexOf('@');
        return at > 0 && _byName.TryGetValue(name[..at], out model) ? model : null;
    }

    public ModelCatalog With(string key, IReadOnlyList<string> loadedInstanceIds)
    {
        var models = Models.Select(m => string.Equals(m.Key, key, StringComparison.OrdinalIgnoreCase) ? m with { LoadedInstanceIds = loadedInstanceIds } : m).ToList();
        return new ModelCatalog(models);
    }
}
