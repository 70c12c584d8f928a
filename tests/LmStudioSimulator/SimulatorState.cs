using System.Collections.Concurrent;
using System.Globalization;

namespace LmStudioSimulator;

/// <summary>
/// What one simulated LM Studio host holds: loaded and loading instances, the requests in flight on each, stored
/// responses, and the counters tests read. (Over 300 lines: one lock guards instances, leases and memory together, so
/// they stay in one file; the variant selection is in SimulatorState.Variants.cs.)
/// </summary>
public sealed partial class SimulatorState(SimulatorOptions options)
{
    /// <summary>LM Studio's guardrail answers a load that does not fit after a short estimate, not at once.</summary>
    private static readonly TimeSpan RefusalDelay = TimeSpan.FromMilliseconds(50);

    private readonly Lock _lock = new();
    private readonly List<Instance> _instances = [];
    private readonly ConcurrentDictionary<string, Task<Instance>> _jitLoads = new();
    private readonly ConcurrentDictionary<string, int> _loads = new();
    private readonly ConcurrentDictionary<string, int> _requestsByPath = new(StringComparer.Ordinal);
    private long _loadingBytes; // guarded by _lock
    private long _peakLoadedBytes; // guarded by _lock
    private int _notLoadedAnswers;
    private int _inferenceRequests;
    private int _catalogReads;
    private int _authRefusals;
    private int _refusedLoads;
    private int _cutOffRequests;
    private int _poisonedRequests;
    private int _unloadRequests;
    private int _webSocketMessages;
    private int _webSocketCloses;

    public SimulatorOptions Options { get; } = options;

    public sealed class Instance(SimModel model, string id, int? contextLength, int parallel = 4, string? variant = null, string? deviceIdentifier = null)
    {
        // Guarded by the owning state's lock.
        internal readonly HashSet<InferenceLease> Leases = [];

        public SimModel Model { get; } = model;
        public string Id { get; } = id;
        public int ContextLength { get; } = contextLength ?? 4096;
        public int Parallel { get; } = parallel;

        /// <summary>The variant key whose weights were loaded (the selected one at load time); null for a single-file model.</summary>
        public string? Variant { get; } = variant;

        /// <summary>The LM Link device it runs on; null: this machine.</summary>
        public string? DeviceIdentifier { get; } = deviceIdentifier;

        public bool IsLocal => DeviceIdentifier is null;
        public DateTimeOffset LastUsed { get; set; } = DateTimeOffset.UtcNow;

        /// <summary>Requests being answered now (at most <see cref="Parallel"/>).</summary>
        public int InFlight { get; internal set; }

        /// <summary>Requests on this instance, answered or waiting for a slot: lms ps's "queued" (it includes the current one).</summary>
        public int Queued { get; internal set; }

        /// <summary>The most requests it ever had at once, answered and waiting (a proxy that holds its own queue keeps this at Parallel).</summary>
        public int PeakQueued { get; internal set; }

        internal SemaphoreSlim Slots { get; } = new(parallel, parallel);
    }

    public int LoadCount(string key) => _loads.GetValueOrDefault(key);

    /// <summary>Stopwatch timestamp of the last completed load, for measuring how fast held requests are released.</summary>
    public long LastLoadCompletedTimestamp { get; private set; }
    public int TotalLoads => _loads.Values.Sum();
    public int NotLoadedAnswers => Volatile.Read(ref _notLoadedAnswers);
    public int InferenceRequests => Volatile.Read(ref _inferenceRequests);
    public void CountNotLoaded() => Interlocked.Increment(ref _notLoadedAnswers);
    public void CountInference() => Interlocked.Increment(ref _inferenceRequests);

    /// <summary>Inference requests whose connection went away before their answer was complete (client left, proxy aborted).</summary>
    public int AbortedRequests => Volatile.Read(ref _abortedRequests);
    public void CountAborted() => Interlocked.Increment(ref _abortedRequests);
    private int _abortedRequests;
    public int CatalogReads => Volatile.Read(ref _catalogReads);

    /// <summary>Requests refused for a missing or wrong API token (401 or the 200 "Unexpected endpoint").</summary>
    public int AuthRefusals => Volatile.Read(ref _authRefusals);
    public void CountAuthRefusal() => Interlocked.Increment(ref _authRefusals);
    public void CountCatalogRead() => Interlocked.Increment(ref _catalogReads);

    /// <summary>Loads the memory guardrail refused (REST, lms and JIT).</summary>
    public int RefusedLoads => Volatile.Read(ref _refusedLoads);

    /// <summary>Requests aborted because their instance was unloaded under them.</summary>
    public int CutOffRequests => Volatile.Read(ref _cutOffRequests);

    /// <summary>Inference requests closed without an answer because of <see cref="SimulatorOptions.AbortRequestsContaining"/>.</summary>
    public int PoisonedRequests => Volatile.Read(ref _poisonedRequests);

    internal void CountPoisoned() => Interlocked.Increment(ref _poisonedRequests);

    /// <summary>Unloads asked for through REST or lms, found or not.</summary>
    public int UnloadRequests => Volatile.Read(ref _unloadRequests);

    /// <summary>The highest sum of SizeBytes of loaded instances seen so far.</summary>
    public long PeakLoadedBytes
    {
        get { lock (_lock) return _peakLoadedBytes; }
    }

    public int WebSocketMessages => Volatile.Read(ref _webSocketMessages);
    public int WebSocketCloses => Volatile.Read(ref _webSocketCloses);
    public string? LastWebSocketAuthorization { get; private set; }

    /// <summary>The Authorization header of the most recent request to LM Studio's API (control paths aside); null when it had none.</summary>
    public string? LastAuthorization { get; private set; }

    /// <summary>How many requests arrived for this exact path (no query string).</summary>
    public int RequestsTo(string path) => _requestsByPath.GetValueOrDefault(path);

    /// <summary>Response ids of /v1/responses, this host's alone: another host never knows them.</summary>
    internal ConcurrentDictionary<string, string> StoredResponses { get; } = new();

    /// <summary>Response ids of /api/v1/chat (stateful chats), this host's alone.</summary>
    internal ConcurrentDictionary<string, string> StoredChats { get; } = new();

    internal void ObserveRequest(string path, string? authorization, bool isControl)
    {
        _requestsByPath.AddOrUpdate(path, 1, (_, n) => n + 1);
        if (!isControl) LastAuthorization = authorization;
    }

    internal void ObserveWebSocket(string? authorization) => LastWebSocketAuthorization = authorization;
    internal void CountWebSocketMessage() => Interlocked.Increment(ref _webSocketMessages);
    internal void CountWebSocketClose() => Interlocked.Increment(ref _webSocketCloses);

    public SimModel? Find(string name) =>
        Options.Models.FirstOrDefault(m => string.Equals(m.Key, name, StringComparison.OrdinalIgnoreCase))
        ?? Options.Models.FirstOrDefault(m => m.Key.EndsWith("/" + name, StringComparison.OrdinalIgnoreCase));

    public List<Instance> Instances()
    {
        lock (_lock) return [.. _instances];
    }

    /// <summary>Requests being answered now on the instances of this model key.</summary>
    public int InFlight(string key)
    {
        lock (_lock) return _instances.Where(i => string.Equals(i.Model.Key, key, StringComparison.OrdinalIgnoreCase)).Sum(i => i.InFlight);
    }

    /// <summary>The instance a request's model name addresses: an instance id, or any instance of the key.</summary>
    public Instance? FindLoaded(string name)
    {
        lock (_lock)
        {
            var instance = FindLoadedLocked(name);
            instance?.LastUsed = DateTimeOffset.UtcNow;
            return instance;
        }
    }

    private Instance? FindLoadedLocked(string name)
    {
        var instance = _instances.FirstOrDefault(i => string.Equals(i.Id, name, StringComparison.OrdinalIgnoreCase));
        if (instance is null && Find(name) is { } model) instance = _instances.FirstOrDefault(i => i.Model == model);
        // ASSUMPTION (F3, F15): a variant key ("key@quant") addresses only an instance loaded under that very identifier;
        // an instance loaded as the base key does not answer to it (Find does not strip the '@').
        return instance;
    }

    /// <summary>
    /// Puts a request on the instance its model name addresses, atomically with the lookup so that an unload
    /// cannot slip in between; null when nothing matching is loaded. <paramref name="cutOff"/> aborts the request.
    /// </summary>
    internal InferenceLease? Admit(string name, Action cutOff)
    {
        lock (_lock) return FindLoadedLocked(name) is { } instance ? AdmitLocked(instance, cutOff) : null;
    }

    /// <summary>Puts a request on this very instance (the one a JIT load made); null when it is already gone.</summary>
    internal InferenceLease? Admit(Instance instance, Action cutOff)
    {
        lock (_lock) return _instances.Contains(instance) ? AdmitLocked(instance, cutOff) : null;
    }

    private InferenceLease AdmitLocked(Instance instance, Action cutOff)
    {
        var lease = new InferenceLease(this, instance, cutOff);
        instance.Leases.Add(lease);
        instance.Queued++;
        instance.PeakQueued = Math.Max(instance.PeakQueued, instance.Queued);
        instance.LastUsed = DateTimeOffset.UtcNow;
        return lease;
    }

    internal void MarkAnswering(InferenceLease lease)
    {
        lock (_lock) lease.Instance.InFlight++;
    }

    internal void Release(InferenceLease lease, bool wasAnswering)
    {
        lock (_lock)
        {
            if (!lease.Instance.Leases.Remove(lease)) return;
            lease.Instance.Queued--;
            if (wasAnswering) lease.Instance.InFlight--;
            // The idle TTL counts from the end of the last request (docs: idle means doing no work).
            lease.Instance.LastUsed = DateTimeOffset.UtcNow;
        }
    }

    /// <summary>
    /// Loads a new instance after the load time. Not idempotent, like lms load and JIT: a loaded key gets "key:2".
    /// Loads run concurrently, as in LM Studio; the memory guardrail counts loaded and loading instances, and a
    /// load that does not fit throws <see cref="ModelLoadRefusedException"/> after a short estimate.
    /// </summary>
    /// <param name="parallel">Slots; only lms load --parallel sets it, REST and JIT loads get the default (F14).</param>
    /// <param name="device">An LM Link device to load on; null: this machine.</param>
    public async Task<Instance> LoadAsync(SimModel model, string? identifier, int? contextLength, CancellationToken cancellationToken = default,
        int? parallel = null, string? device = null)
    {
        FlipVariant(model);
        var variant = SelectedVariant(model);
        if (device is not null)
        {
            // Another machine's memory: this one's guardrail does not count it.
            await Task.Delay(Options.LoadTime, cancellationToken);
            _loads.AddOrUpdate(model.Key, 1, (_, n) => n + 1);
            lock (_lock)
            {
                var peerInstance = new Instance(model, NextIdLocked(identifier ?? model.Key), Options.AutoFitContextLength ?? contextLength, parallel ?? Options.Parallel, variant, device);
                _instances.Add(peerInstance);
                return peerInstance;
            }
        }
        if (!TryReserveMemory(model))
        {
            await Task.Delay(RefusalDelay, cancellationToken);
            Interlocked.Increment(ref _refusedLoads);
            throw new ModelLoadRefusedException(model);
        }
        try
        {
            await Task.Delay(Options.LoadStallsAt is null ? Options.LoadTime : Timeout.InfiniteTimeSpan, cancellationToken);
        }
        catch
        {
            lock (_lock) _loadingBytes -= model.SizeBytes;
            throw;
        }
        _loads.AddOrUpdate(model.Key, 1, (_, n) => n + 1);
        lock (_lock)
        {
            _loadingBytes -= model.SizeBytes;
            var instance = new Instance(model, NextIdLocked(identifier ?? model.Key), Options.AutoFitContextLength ?? contextLength, parallel ?? Options.Parallel, variant);
            _instances.Add(instance);
            _peakLoadedBytes = Math.Max(_peakLoadedBytes, _instances.Where(i => i.IsLocal).Sum(i => i.Model.SizeBytes));
            LastLoadCompletedTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            return instance;
        }
    }

    private string NextIdLocked(string wanted)
    {
        var id = wanted;
        for (var n = 2; _instances.Any(i => i.Id == id); n++) id = $"{wanted}:{n}";
        return id;
    }

    private bool TryReserveMemory(SimModel model)
    {
        lock (_lock)
        {
            if (!FitsLocked(model)) return false;
            _loadingBytes += model.SizeBytes;
            return true;
        }
    }

    /// <summary>Whether the guardrail would let this model load now, next to what is loaded and loading.</summary>
    internal bool WouldFit(SimModel model)
    {
        lock (_lock) return FitsLocked(model);
    }

    private bool FitsLocked(SimModel model) =>
        Options.MemoryBudgetBytes is not { } budget || _instances.Where(i => i.IsLocal).Sum(i => i.Model.SizeBytes) + _loadingBytes + model.SizeBytes <= budget;

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

    /// <summary>Unloads by instance id or, given a key, every instance of it, cutting off their requests. Returns how many went.</summary>
    public int Evict(string name)
    {
        List<Instance> gone;
        lock (_lock)
        {
            gone = _instances.FindAll(i => string.Equals(i.Id, name, StringComparison.OrdinalIgnoreCase) ||
                                           string.Equals(i.Model.Key, name, StringComparison.OrdinalIgnoreCase));
        }
        return Unload(gone);
    }

    /// <summary>
    /// Unloads like <see cref="Evict"/>, but only instances with no request on them, atomically: an eviction that
    /// happens between requests, never during one (as a well-behaved idle TTL would).
    /// </summary>
    public int EvictIfIdle(string name)
    {
        List<Instance> idle;
        lock (_lock)
        {
            idle = _instances.FindAll(i => i.Queued == 0 && (string.Equals(i.Id, name, StringComparison.OrdinalIgnoreCase) ||
                                                             string.Equals(i.Model.Key, name, StringComparison.OrdinalIgnoreCase)));
            // Removed under the same lock that admits requests, so none can slip onto them in between.
            foreach (var instance in idle) _instances.Remove(instance);
        }
        return idle.Count;
    }

    /// <summary>An unload asked for by REST or lms: the exact instance id, as both match it (contract §3.4).</summary>
    public bool UnloadInstance(string instanceId)
    {
        Interlocked.Increment(ref _unloadRequests);
        List<Instance> gone;
        lock (_lock) gone = _instances.FindAll(i => i.Id == instanceId);
        return Unload(gone) > 0;
    }

    public void EvictIdle()
    {
        if (Options.IdleTtl is not { } ttl) return;
        List<Instance> idle;
        lock (_lock) idle = _instances.FindAll(i => i.Queued == 0 && DateTimeOffset.UtcNow - i.LastUsed > ttl);
        Unload(idle);
    }

    /// <summary>
    /// Removes the instances and aborts every request on them, answering or queued: LM Studio has no drain, an
    /// unload cuts a generation off mid-way (capacity-signals §1.7, §2).
    /// </summary>
    private int Unload(List<Instance> instances)
    {
        var removed = 0;
        lock (_lock)
        {
            foreach (var instance in instances)
            {
                if (!_instances.Remove(instance)) continue;
                removed++;
                // Under the lock that guards the leases: a lease still listed belongs to a request still running, so
                // the abort reaches that request and never the next one Kestrel serves on the same connection.
                foreach (var lease in instance.Leases)
                {
                    Interlocked.Increment(ref _cutOffRequests);
                    lease.CutOff();
                }
            }
        }
        return removed;
    }
}

/// <summary>One inference request on one instance: it waits for one of the instance's parallel slots, then answers.</summary>
internal sealed class InferenceLease(SimulatorState state, SimulatorState.Instance instance, Action cutOff) : IDisposable
{
    private bool _answering;

    public SimulatorState.Instance Instance { get; } = instance;

    /// <summary>Waits in LM Studio's queue until the instance has a free slot.</summary>
    public async Task WaitForSlotAsync(CancellationToken cancellationToken)
    {
        await Instance.Slots.WaitAsync(cancellationToken);
        _answering = true;
        state.MarkAnswering(this);
    }

    public void CutOff() => cutOff();

    public void Dispose()
    {
        state.Release(this, _answering);
        if (_answering) Instance.Slots.Release();
    }
}

/// <summary>LM Studio's memory guardrail refused a load; the message is its current (≥0.3.27) wording.</summary>
public sealed class ModelLoadRefusedException(SimModel model) : Exception(GuardrailMessage(model))
{
    public SimModel Model { get; } = model;

    /// <summary>The short form a failed JIT load carries inside "Failed to load model ... Error: ...".</summary>
    public const string ShortMessage = "Model loading was stopped due to insufficient system resources.";

    /// <summary>The guardrail's text, with an estimate of 1.15 × the file size in GB (decimal: no binary rounding surprises).</summary>
    public static string GuardrailMessage(SimModel model)
    {
        var gigabytes = model.SizeBytes / 1_000_000_000m * 1.15m;
        return "Model loading was stopped due to insufficient system resources. Under the current settings, this model requires approximately " +
               gigabytes.ToString("0.00", CultureInfo.InvariantCulture) +
               " GB of memory, and continuing to load it would likely overload your system and cause it to freeze. " +
               "If you think this is incorrect, you can adjust the model loading guardrails in settings.";
    }
}
