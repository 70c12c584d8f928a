using System.Collections.Frozen;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Hosts;
using LmsProxy.Models;
using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Scheduling;

/// <summary>
/// The one place that decides where a request goes and what must happen first.
/// <list type="bullet">
/// <item>Warm: a ready instance of the model on a healthy host is leased without a lock or any I/O.</item>
/// <item>Cold: the request waits in its model's group. One load per model across all hosts (single flight), one
/// load or unload at a time per host. A host is chosen in order: has room, gets room by unloading idle models
/// (least recently used, never pinned, never busy), or waits for a busy model to drain.</item>
/// <item>No thrash: a loaded model keeps serving its requests while another model waits for its room, until that
/// model's oldest request has waited MaxSwapWait; then the loaded model takes no new requests, drains, and is swapped
/// out, and the whole waiting group is released together.</item>
/// <item>Refusals teach: when LM Studio refuses a load for lack of memory, the host's ceiling is lowered and the
/// next plan unloads one more idle model, or waits for a busy one, or says the model can never fit.</item>
/// </list>
/// State changes happen under one lock (<see cref="Pump"/> is the decision point); loads, unloads and model-list reads
/// run outside it, and every one of them ends in exactly one final state, then pumps again.
/// The rooms: this file (the warm path, admission, release), Policy/ (the pure placement policy), Scheduler.Decisions
/// (snapshot in, decisions applied), Scheduler.Operations (loads and unloads), Scheduler.Catalog (what LM Studio
/// lists), Scheduler.Learning (ceilings, footprints), Scheduler.Operator (pins, operator loads and unloads),
/// Scheduler.Queue (wait groups), Scheduler.Status (what operators see).
/// </summary>
internal sealed partial class Scheduler : IDisposable
{
    /// <summary>A load LM Studio reports as done but whose model is not listed afterwards, this many times in a row, is a failure.</summary>
    public const int VanishedLoadsTolerated = 3;

    /// <summary>"Not loaded" answers for a model LM Studio lists as loaded, this many times in a row, mean LM Studio is broken.</summary>
    public const int ContradictionsTolerated = 3;

    private static readonly TimeSpan SpillRetryInterval = TimeSpan.FromSeconds(1);

    /// <summary>How long a name no host lists is answered "not found" without reading the hosts' lists again.</summary>
    private static readonly TimeSpan UnknownNameMemory = TimeSpan.FromSeconds(2);

    /// <summary>How long "too large even alone" stands before LM Studio is asked again.</summary>
    private static readonly TimeSpan TooLargeMemory = TimeSpan.FromMinutes(5);

    /// <summary>Wait before an operator's unload that failed is tried again.</summary>
    private static readonly TimeSpan UnloadRetryDelay = TimeSpan.FromSeconds(5);


    private readonly HostCluster _cluster;
    private readonly ProxySettings _settings;
    private readonly ProxyMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<Scheduler> _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, WaitGroup> _groups = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, long> _learnedFootprint = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, bool> _operatorPins = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<(string Host, string Model), int> _vanishedLoads = [];
    private readonly Dictionary<(string Host, string Model), (string Message, DateTimeOffset At)> _lastErrors = [];
    private readonly Dictionary<(string Host, string Model), TimeSpan> _lastLoadDurations = [];
    private readonly Dictionary<string, int> _unloadCounts = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _unknownNames = new(StringComparer.OrdinalIgnoreCase);
    private readonly CancellationTokenSource _stopping = new();
    private int _swapCount;
    private readonly ITimer _tick;
    private readonly ITimer _wake;
    private long _wakeDue;
    private volatile FrozenDictionary<string, HostedModel[]> _ready = FrozenDictionary<string, HostedModel[]>.Empty;
    private volatile ModelCatalog _catalog = ModelCatalog.Empty;
    private volatile bool _severalHosts;
    private int _waiting;
    private bool _dirty;

    public Scheduler(HostCluster cluster, ProxySettings settings, ProxyMetrics metrics, CapacityEvents events, TimeProvider time, ILogger<Scheduler> logger,
        IHostApplicationLifetime lifetime, Storage.IStateStore? state = null)
    {
        // Stopping ends what is under way at once: loads and unloads (their lms processes are killed), and held
        // requests (503), so that the server's graceful stop does not wait for them.
        lifetime.ApplicationStopping.Register(Stop);
        _cluster = cluster;
        _settings = settings;
        _metrics = metrics;
        Events = events;
        _time = time;
        _logger = logger;
        cluster.Changed += () =>
        {
            lock (_lock)
            {
                // A settings edit may have freed memory or shortened a context: ask LM Studio again.
                foreach (var host in _cluster.Hosts) host.TooLarge.Clear();
                _dirty = true;
                Pump();
            }
        };
        _severalHosts = cluster.Hosts.Count > 1;
        RestoreState(state); // pins, ceilings, footprints, load times from the last run (Scheduler.State.cs)
        metrics.Meter.CreateObservableGauge("lmsproxy.requests.held", ObserveHeld, description: "Requests held now, by model.");
        metrics.Meter.CreateObservableGauge("lmsproxy.instance.in_flight", () => ObserveInstances(i => i.InFlight), description: "Requests in flight per loaded model and host (draining ones included).");
        metrics.Meter.CreateObservableGauge("lmsproxy.host.memory.estimated_bytes", ObserveMemory, unit: "By", description: "Estimated memory of the models loaded on each host.");
        metrics.Meter.CreateObservableGauge("lmsproxy.instance.estimated_bytes", () => ObserveInstances(i => i.EstimatedBytes), unit: "By", description: "Estimated memory of each loaded model, by host.");
        metrics.Meter.CreateObservableGauge("lmsproxy.instance.idle_seconds", () => ObserveInstances(i => i.InFlight > 0 ? 0 : (long)_time.GetElapsedTime(i.LastUsed).TotalSeconds), unit: "s", description: "Seconds since each loaded model was last used (0 while busy).");
        metrics.Meter.CreateObservableGauge("lmsproxy.instance.pinned", () => ObserveInstances(i => IsPinned(i.ModelKey) ? 1 : 0), description: "1 for a pinned model (never unloaded by the proxy).");
        metrics.Meter.CreateObservableGauge("lmsproxy.instance.state", ObserveStates, description: "1 for each loaded model's state: loading, idle, busy, draining, unloading.");
        metrics.Meter.CreateObservableGauge("lmsproxy.host.memory.budget_bytes", () => _cluster.Hosts.Select(h => new System.Diagnostics.Metrics.Measurement<long>(Budget(h), new KeyValuePair<string, object?>("host", h.Name))),
            unit: "By", description: "The memory budget in force per host (configured or learned; 0: unknown).");
        metrics.Meter.CreateObservableGauge("lmsproxy.host.up", () => _cluster.Hosts.Select(h => new System.Diagnostics.Metrics.Measurement<int>(h.IsHealthy ? 1 : 0, new KeyValuePair<string, object?>("host", h.Name))),
            description: "1 while YARP's health checks see the host alive.");
        // Idle unloads, swap-wait expiries and health changes are noticed on this tick.
        _tick = time.CreateTimer(_ => Tick(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        _wake = time.CreateTimer(_ =>
        {
            lock (_lock) Pump();
        }, null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public CapacityEvents Events { get; }

    /// <summary>Every model some host has downloaded (the union of the hosts' lists).</summary>
    public ModelCatalog Catalog => _catalog;

    public IReadOnlyList<LmStudioHost> Hosts => _cluster.Hosts;

    /// <summary>More than one host: placement, affinity and the X-LmsProxy-Host header matter.</summary>
    public bool SeveralHosts => _severalHosts;

    /// <summary>Where requests that name no model go: the first healthy host.</summary>
    public LmStudioHost? DefaultHost()
    {
        var hosts = _cluster.Hosts;
        foreach (var host in hosts)
        {
            if (host.IsHealthy) return host;
        }
        return hosts.Count > 0 ? hosts[0] : null;
    }

    /// <summary>The warm path: a lease on a ready instance, or null. No lock, no I/O; it allocates only when no healthy host has the model.</summary>
    public HostedModel? TryWarm(string model, LmStudioHost? pin)
    {
        if (!_ready.TryGetValue(model, out var instances)) return null;
        HostedModel? best = null, unhealthy = null;
        foreach (var instance in instances)
        {
            if (pin is not null && !ReferenceEquals(instance.Host, pin)) continue;
            if (!instance.Host.IsHealthy) unhealthy ??= instance;
            else if (best is null || instance.InFlight < best.InFlight) best = instance;
        }
        // Only when no healthy host could serve the model (none has it downloaded and allowed), try an unhealthy one
        // anyway (YARP's "panic" mode): a refused connection is fast, and a host that just came back serves at once.
        // Otherwise the request waits in its group, and placement loads the model on a healthy host.
        if (best is null && unhealthy is not null && !SomeHealthyHostCouldServe(unhealthy.ModelKey, pin)) best = unhealthy;
        var now = _time.GetTimestamp();
        if (best is null || !best.TryAcquire(now)) return null;
        if (_severalHosts && pin is null && best.InFlight >= SpillThreshold(best) && best.ClaimSpillCheck(now, ToTimestamp(SpillRetryInterval))) RequestSpill(best.ModelKey);
        return best;
    }

    private bool SomeHealthyHostCouldServe(string key, LmStudioHost? pin)
    {
        foreach (var host in _cluster.Hosts)
        {
            if (!host.Removed && host.IsHealthy && (pin is null || ReferenceEquals(host, pin)) && host.Catalog.Resolve(key) is not null && host.Allows(key)) return true;
        }
        return false;
    }

    /// <summary>
    /// Holds the caller until its model is ready somewhere (or on <paramref name="pin"/>), its deadline passes, or it
    /// leaves. Its key's <paramref name="priority"/> weighs which waiting model loads next (see PlacementPolicy).
    /// </summary>
    public async ValueTask<Admission> AdmitAsync(string model, LmStudioHost? pin, long deadline, CancellationToken requestAborted, WaitTicket? ticket = null, Keys.KeyPriority priority = Keys.KeyPriority.Normal)
    {
        if (TryWarm(model, pin) is { } warm) return new(AdmissionStatus.Granted, warm.Host, warm);
        var started = _time.GetTimestamp();

        var key = KnownKey(model, pin);
        if (key is null)
        {
            // A name no host lists (yet): read the hosts' lists once (joining a read under way), it may have just been
            // downloaded. A name found in no list is remembered briefly, so clients spraying names cost no reads.
            if (_unknownNames.TryGetValue(model, out var until) && until > started) return Unknown(model, pin);
            try
            {
                await RefreshAllAsync(requestAborted);
            }
            catch (OperationCanceledException) when (requestAborted.IsCancellationRequested)
            {
                return Admission.Refusal(AdmissionStatus.Cancelled, "The client disconnected while waiting.");
            }
            key = KnownKey(model, pin);
            if (key is null)
            {
                var unknown = Unknown(model, pin);
                if (unknown.Status == AdmissionStatus.NotFound) RememberUnknown(model, started);
                return unknown;
            }
        }

        var options = _settings.Current;
        Waiter waiter;
        var full = false;
        lock (_lock)
        {
            // MaxHeldPerModel counts every request held for the model, pinned to a host or not.
            var held = 0;
            foreach (var g in _groups.Values)
            {
                if (string.Equals(g.Key, key, StringComparison.OrdinalIgnoreCase)) held += g.Held;
            }
            waiter = new Waiter(started, background: false) { Priority = priority };
            if (held >= options.Holding.MaxHeldPerModel)
            {
                full = true;
            }
            else
            {
                var group = GroupFor(key, pin);
                group.Add(waiter);
                _waiting++;
                if (ticket is not null) (ticket.Waiter, ticket.GroupId) = (waiter, group.Id); // its place, for Describe
                Pump();
                SignalChanged();
            }
        }
        if (full)
        {
            _metrics.HoldEnded(key, "queue_full", TimeSpan.Zero);
            return Admission.Refusal(AdmissionStatus.QueueFull, $"{options.Holding.MaxHeldPerModel} requests are already waiting for '{key}'.");
        }

        Admission admission;
        var remaining = TimeSpan.FromTicks(Math.Max(0, (long)((deadline - started) * (double)TimeSpan.TicksPerSecond / _time.TimestampFrequency)));
        try
        {
            admission = await waiter.Done.Task.WaitAsync(remaining, _time, requestAborted);
        }
        catch (TimeoutException)
        {
            admission = Abandon(waiter, key, pin) ?? Admission.Refusal(AdmissionStatus.HoldTimeout, HoldTimeoutDetail(key, pin, remaining));
        }
        catch (OperationCanceledException) when (requestAborted.IsCancellationRequested)
        {
            admission = Abandon(waiter, key, pin, release: true) ?? Admission.Refusal(AdmissionStatus.Cancelled, "The client disconnected while waiting.");
        }
        admission = admission with { Held = _time.GetElapsedTime(started) };
        _metrics.HoldEnded(key, admission.Status.MetricOutcome(), admission.Held);
        return admission;
    }

    /// <summary>Gives a lease back: the response's last byte was written, or its client left.</summary>
    public void Release(HostedModel instance)
    {
        if (instance.Release(_time.GetTimestamp()) && (instance.State != InstanceState.Ready || Volatile.Read(ref _waiting) > 0))
        {
            lock (_lock) Pump();
        }
    }

    private void Stop()
    {
        _stopping.Cancel();
        lock (_lock)
        {
            foreach (var group in _groups.Values.ToList()) Fail(group, Admission.Refusal(AdmissionStatus.ShuttingDown, "LmsProxy is stopping."));
        }
    }

    public void Dispose()
    {
        Stop();
        _tick.Dispose();
        _wake.Dispose();
    }

    /// <summary>Arranges a pump at <paramref name="when"/> (a timestamp), unless one is due sooner.</summary>
    private void WakeAt(long when, long now)
    {
        if (_wakeDue > now && _wakeDue <= when) return;
        _wakeDue = when;
        _wake.Change(TimeSpan.FromSeconds(Math.Max(0, when - now) / (double)_time.TimestampFrequency) + TimeSpan.FromMilliseconds(1), Timeout.InfiniteTimeSpan);
    }

    private void Tick()
    {
        lock (_lock) Pump();
    }

    private long ToTimestamp(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);
}
