using System.Runtime.CompilerServices;
using LmsProxy.Hosts;
using LmsProxy.Models;

namespace LmsProxy.Scheduling;

internal enum InstanceState
{
    /// <summary>The proxy is loading it.</summary>
    Loading,

    /// <summary>Loaded and taking requests.</summary>
    Ready,

    /// <summary>Loaded, but taking no new requests: it finishes what it has, then is unloaded.</summary>
    Draining,

    /// <summary>Being unloaded (it had no request in flight when that began).</summary>
    Unloading,

    /// <summary>No longer loaded.</summary>
    Gone,
}

/// <summary>
/// One model loaded on one host, and how busy it is (not called "instance": that is LM Studio's word for its own
/// loaded copies, with their own ids). The in-flight count is the lease: taken before a request is
/// forwarded, given back when its response's last byte is written or its client leaves. Eviction only ever takes an
/// instance whose count is zero, and both sides use interlocked operations, so a busy model is never unloaded.
/// </summary>
internal sealed class HostedModel(LmStudioHost host, string modelKey, bool loadedByProxy, long estimatedBytes)
{
    private int _inFlight;
    private int _state = (int)InstanceState.Loading;
    private long _lastUsed;
    private long _spillCheckedAt;

    public LmStudioHost Host { get; } = host;

    public string ModelKey { get; } = modelKey;

    /// <summary>False for a model someone else loaded (the LM Studio app, another tool): it is evicted only with EvictForeign.</summary>
    public bool LoadedByProxy { get; internal set; } = loadedByProxy;

    /// <summary>LM Studio's instances of this model on this host (normally one; a foreign duplicate ":2" joins it).</summary>
    public IReadOnlyList<LoadedInstance> LmStudioInstances
    {
        get => _lmStudioInstances;
        internal set
        {
            _lmStudioInstances = value;
            ReportedParallel = value.Any(i => i.Parallel is not null) ? value.Max(i => i.Parallel ?? 4) : null;
        }
    }

    private IReadOnlyList<LoadedInstance> _lmStudioInstances = [];

    /// <summary>LM Studio's parallel for it when it says (computed once per model-list read: the slot gate reads it per request).</summary>
    public int? ReportedParallel { get; private set; }

    /// <summary>Its parallel slots as the proxy hands them out (Sharing/SlotQueue): the rest of its leases wait there.</summary>
    internal Sharing.SlotQueue Slots { get; } = new();

    public long EstimatedBytes { get; internal set; } = estimatedBytes;

    public InstanceState State => (InstanceState)Volatile.Read(ref _state);

    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The metric counter of requests forwarded to this model on this host (outlives the instance).</summary>
    internal StrongBox<long> Forwarded { get; init; } = new();

    /// <summary>LM Studio's concurrent predictions for it (its parallel), 4 when LM Studio does not say (its default).</summary>
    public int Parallel => LmStudioInstances.Select(i => i.Parallel ?? 4).DefaultIfEmpty(4).Max();

    /// <summary>Timestamp (TimeProvider) of its last use: when a request was taken or finished.</summary>
    public long LastUsed => Volatile.Read(ref _lastUsed);

    public DateTimeOffset? LoadedAt { get; internal set; }

    /// <summary>Timestamp (TimeProvider) its load ended; 0 for a model found loaded (it has no residency to respect).</summary>
    internal long LoadedAtTimestamp { get; set; }

    /// <summary>When the proxy began loading it (for a progress bar against the last load's duration).</summary>
    public DateTimeOffset? LoadStartedAt { get; internal set; }

    /// <summary>Unload as soon as it drains (an operator asked).</summary>
    internal bool UnloadWhenDrained { get; set; }

    /// <summary>Timestamp before which a failed operator unload is not tried again.</summary>
    internal long UnloadRetryAt { get; set; }

    /// <summary>"Not loaded" answers for it while LM Studio lists it as loaded, in a row (the broken-LM-Studio guard).</summary>
    internal int Contradictions { get; set; }

    /// <summary>Takes a lease if the instance takes requests; the warm path. Lock-free.</summary>
    internal bool TryAcquire(long now)
    {
        Interlocked.Increment(ref _inFlight);
        // Read after the increment (both are full fences): either the unloader sees our count, or we see its state.
        if (State != InstanceState.Ready)
        {
            Interlocked.Decrement(ref _inFlight);
            return false;
        }
        Volatile.Write(ref _lastUsed, now);
        return true;
    }

    /// <summary>Takes a lease for a request the scheduler admits (under its lock, instance Ready).</summary>
    internal void Admit(long now)
    {
        Interlocked.Increment(ref _inFlight);
        Volatile.Write(ref _lastUsed, now);
    }

    /// <summary>Gives a lease back; true when it was the last one.</summary>
    internal bool Release(long now)
    {
        Volatile.Write(ref _lastUsed, now);
        return Interlocked.Decrement(ref _inFlight) == 0;
    }

    internal void SetState(InstanceState state) => Interlocked.Exchange(ref _state, (int)state);

    /// <summary>Begins an unload if nothing is in flight; otherwise leaves it draining. Under the scheduler's lock.</summary>
    internal bool TryBeginUnload()
    {
        var previous = (InstanceState)Interlocked.Exchange(ref _state, (int)InstanceState.Unloading);
        if (Volatile.Read(ref _inFlight) == 0) return true;
        // A request slipped in between: it keeps the model; it will drain instead.
        SetState(previous == InstanceState.Ready ? InstanceState.Ready : InstanceState.Draining);
        return false;
    }

    /// <summary>At most one caller per interval asks for a spill-over load (the check takes the scheduler's lock).</summary>
    internal bool ClaimSpillCheck(long now, long interval)
    {
        var last = Volatile.Read(ref _spillCheckedAt);
        return now - last >= interval && Interlocked.CompareExchange(ref _spillCheckedAt, now, last) == last;
    }

    internal void Touch(long now) => Volatile.Write(ref _lastUsed, now);
}
