using System.Collections.Concurrent;

namespace LmStudioSimulator;

/// <summary>What is loaded, and counters tests read: loads per model, "not loaded" refusals, requests.</summary>
public sealed class SimulatorState(SimulatorOptions options)
{
    private readonly Lock _lock = new();
    private readonly List<Instance> _instances = [];
    private readonly ConcurrentDictionary<string, Task<Instance>> _jitLoads = new();
    private readonly ConcurrentDictionary<string, int> _loads = new();
    private int _notLoadedAnswers;
    private int _inferenceRequests;
    private int _catalogReads;

    public SimulatorOptions Options { get; } = options;

    public sealed class Instance(SimModel model, string id, int? contextLength)
    {
        public SimModel Model { get; } = model;
        public string Id { get; } = id;
        public int ContextLength { get; } = contextLength ?? 4096;
        public DateTimeOffset LastUsed { get; set; } = DateTimeOffset.UtcNow;
    }

    public int LoadCount(string key) => _loads.GetValueOrDefault(key);

    /// <summary>Stopwatch timestamp of the last completed load, for measuring how fast held requests are released.</summary>
    public long LastLoadCompletedTimestamp { get; private set; }
    public int TotalLoads => _loads.Values.Sum();
    public int NotLoadedAnswers => Volatile.Read(ref _notLoadedAnswers);
    public int InferenceRequests => Volatile.Read(ref _inferenceRequests);
    public void CountNotLoaded() => Interlocked.Increment(ref _notLoadedAnswers);
    public void CountInference() => Interlocked.Increment(ref _inferenceRequests);
    public int CatalogReads => Volatile.Read(ref _catalogReads);
    public void CountCatalogRead() => Interlocked.Increment(ref _catalogReads);

    public SimModel? Find(string name) =>
        Options.Models.FirstOrDefault(m => string.Equals(m.Key, name, StringComparison.OrdinalIgnoreCase))
        ?? Options.Models.FirstOrDefault(m => m.Key.EndsWith("/" + name, StringComparison.OrdinalIgnoreCase));

    public List<Instance> Instances()
    {
        lock (_lock) return [.. _instances];
    }

    /// <summary>The instance a request's model name addresses: an instance id, or any instance of the key.</summary>
    public Instance? FindLoaded(string name)
    {
        lock (_lock)
        {
            var instance = _instances.FirstOrDefault(i => string.Equals(i.Id, name, StringComparison.OrdinalIgnoreCase));
            if (instance is null && Find(name) is { } model) instance = _instances.FirstOrDefault(i => i.Model == model);
            instance?.LastUsed = DateTimeOffset.UtcNow;
            return instance;
        }
    }

    /// <summary>Loads a new instance after the load time. Not idempotent, like lms load and JIT: a loaded key gets "key:2".</summary>
    public async Task<Instance> LoadAsync(SimModel model, string? identifier, int? contextLength, CancellationToken cancellationToken = default)
    {
        await Task.Delay(Options.LoadTime, cancellationToken);
        _loads.AddOrUpdate(model.Key, 1, (_, n) => n + 1);
        lock (_lock)
        {
            var id = identifier ?? model.Key;
            for (var n = 2; _instances.Any(i => i.Id == id); n++) id = $"{identifier ?? model.Key}:{n}";
            var instance = new Instance(model, id, contextLength);
            _instances.Add(instance);
            LastLoadCompletedTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            return instance;
        }
    }

    /// <summary>A JIT load: with the duplicate bug every concurrent request starts its own load.</summary>
    public Task<Instance> JitLoadAsync(SimModel model)
    {
        if (Options.DuplicateInstanceBug) return LoadAsync(model, null, null);
        return _jitLoads.GetOrAdd(model.Key, _ => LoadAndForget(model));

        async Task<Instance> LoadAndForget(SimModel m)
        {
            try { return await LoadAsync(m, null, null); }
            finally { _jitLoads.TryRemove(m.Key, out _); }
        }
    }

    /// <summary>Unloads by instance id or, given a key, every instance of it. Returns how many went.</summary>
    public int Evict(string name)
    {
        lock (_lock)
        {
            return _instances.RemoveAll(i => string.Equals(i.Id, name, StringComparison.OrdinalIgnoreCase) ||
                                              string.Equals(i.Model.Key, name, StringComparison.OrdinalIgnoreCase));
        }
    }

    public void EvictIdle()
    {
        if (Options.IdleTtl is not { } ttl) return;
        lock (_lock) _instances.RemoveAll(i => DateTimeOffset.UtcNow - i.LastUsed > ttl);
    }
}
