namespace LmsProxy.Models;

/// <summary>One loaded instance as LM Studio lists it: the identifier requests use, and its load settings.</summary>
/// <param name="ContextLength">The context LM Studio reports it loaded, which AutoFit can make far larger than asked (F22).</param>
/// <param name="Parallel">Its slots as LM Studio reports them: 4 for every REST or JIT load (F14).</param>
/// <param name="DeviceIdentifier">The LM Link device it runs on (lms ps --json); null: this machine, or not known (F10).</param>
internal sealed record LoadedInstance(string Id, int? ContextLength = null, int? Parallel = null, string? DeviceIdentifier = null)
{
    /// <summary>Another machine's instance (LM Link): it costs this host no memory, and the proxy must never unload it.</summary>
    public bool IsRemote => DeviceIdentifier is not null;
}

/// <summary>One downloaded model as LM Studio lists it, with its loaded instances.</summary>
/// <param name="SizeBytes">The model's file size (LM Studio's size_bytes); 0 when LM Studio does not say.</param>
/// <param name="Variants">A multi-variant model's variant keys ("key@quant"); empty for a single-file model (F3).</param>
/// <param name="SelectedVariant">The variant a load of the base key gets now; it can change under the proxy (F3).</param>
/// <param name="Quantization">The quantization LM Studio lists (of the selected variant), e.g. "Q4_K_M" or "8bit".</param>
internal sealed record CatalogModel(string Key, string Type, IReadOnlyList<LoadedInstance> Instances, long SizeBytes = 0, int? MaxContextLength = null,
    IReadOnlyList<string>? Variants = null, string? SelectedVariant = null, string? Quantization = null)
{
    public bool IsLoaded => Instances.Count > 0;

    public bool HasVariants => Variants is { Count: > 0 };

    /// <summary>The instances on this machine (not on an LM Link peer): the ones that count against its memory.</summary>
    public IEnumerable<LoadedInstance> LocalInstances => Instances.Where(i => !i.IsRemote);

    /// <summary>The variant key <paramref name="name"/> names ("key@quant", any case), or null when it names none of this model's.</summary>
    public string? VariantNamed(string name) => Variants?.FirstOrDefault(v => string.Equals(v, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>Downloaded models at one moment (one host's, or the union of all hosts'), and how client-sent names map onto them.</summary>
internal sealed class ModelCatalog
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
            foreach (var instance in model.Instances) _byName.TryAdd(instance.Id, model);
            if (BareName(model.Key) is { } name) bare[name] = bare.ContainsKey(name) ? null : model;
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

    /// <summary>Every name that resolves to <paramref name="key"/>: the key, its unambiguous bare name, its instance ids.</summary>
    public IEnumerable<string> NamesOf(string key)
    {
        foreach (var (name, model) in _byName)
        {
            if (string.Equals(model.Key, key, StringComparison.OrdinalIgnoreCase)) yield return name;
        }
    }

    /// <summary>The models of several hosts, each key once, with the instances of all hosts (for name resolution).</summary>
    public static ModelCatalog Union(IEnumerable<ModelCatalog> catalogs)
    {
        var byKey = new Dictionary<string, CatalogModel>(StringComparer.OrdinalIgnoreCase);
        var order = new List<string>();
        foreach (var model in catalogs.SelectMany(c => c.Models))
        {
            if (byKey.TryGetValue(model.Key, out var seen))
            {
                byKey[model.Key] = seen with { Instances = [.. seen.Instances, .. model.Instances] };
                continue;
            }
            byKey[model.Key] = model;
            order.Add(model.Key);
        }
        return new ModelCatalog([.. order.Select(k => byKey[k])]);
    }

    private static string? BareName(string key)
    {
        var slash = key.LastIndexOf('/');
        return slash >= 0 ? key[(slash + 1)..] : null;
    }
}
