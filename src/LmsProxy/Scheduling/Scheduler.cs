using System.Collections.Frozen;
using System.Diagnostics;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Hosts;
using LmsProxy.Loading;
using LmsProxy.Models;

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
/// All state changes happen under one lock in <see cref="Pump"/>; loads and unloads run outside it and pump again when done.
/// </summary>
public sealed partial class Scheduler : IDisposable
{
    /// <summary>A load LM Studio reports as done but whose model is not listed afterwards, this many times in a row, is a failure.</summary>
    public const int VanishedLoadsTolerated = 3;

    /// <summary>"Not loaded" answers for a model LM Studio lists as loaded, this many times in a row, mean LM Studio is broken.</summary>
    public const int ContradictionsTolerated = 3;

    private static readonly TimeSpan SpillRetryInterval = TimeSpan.FromSeconds(1);

    /// <summary>A model used this recently counts as busy when room is needed, though nothing is in flight at this instant.</summary>
    public static readonly TimeSpan ActiveWindow = TimeSpan.FromSeconds(1);

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
    private int _swapCount;
    private readonly ITimer _tick;
    private readonly ITimer _wake;
    private long _wakeDue;
    private volatile FrozenDictionary<string, Instance[]> _ready = FrozenDictionary<string, Instance[]>.Empty;
    private volatile ModelCatalog _catalog = ModelCatalog.Empty;
    private volatile bool _severalHosts;
    private int _waiting;
    private bool _dirty;

    public Scheduler(HostCluster cluster, ProxySettings settings, ProxyMetrics metrics, CapacityEvents events, TimeProvider time, ILogger<Scheduler> logger,
        Storage.IStateStore? state = null) // [state] the store, see Scheduler.State.cs
    {
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
                _dirty = true;
                Pump();
            }
        };
        _severalHosts = cluster.Hosts.Count > 1;
        RestoreState(state); // [state] pins, ceilings, footprints, load times from the last run
        metrics.Meter.CreateObservableGauge("lmsproxy.requests.held", ObserveHeld, description: "Requests held now, by model.");
        metrics.Meter.CreateObservableGauge("lmsproxy.instance.in_flight", ObserveInFlight, description: "Requests in flight per loaded model and host.");
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

    /// <summary>The warm path: a lease on a ready instance, or null. No lock, no I/O, no allocation.</summary>
    public Instance? TryWarm(string model, LmStudioHost? pin)
    {
        if (!_ready.TryGetValue(model, out var instances)) return null;
        Instance? best = null, unhealthy = null;
        foreach (var instance in instances)
        {
            if (pin is not null && !ReferenceEquals(instance.Host, pin)) continue;
            if (!instance.Host.IsHealthy) unhealthy ??= instance;
            else if (best is null || instance.InFlight < best.InFlight) best = instance;
        }
        // With no healthy host left, try the others anyway (YARP's "panic" mode): a refused connection is fast,
        // and a host that just came back serves at once instead of after its health checks agree.
        best ??= unhealthy;
        var now = _time.GetTimestamp();
        if (best is null || !best.TryAcquire(now)) return null;
        if (_severalHosts && pin is null && best.InFlight > SpillThreshold(best) && best.ClaimSpillCheck(now, ToTimestamp(SpillRetryInterval))) RequestSpill(best.ModelKey);
        return best;
    }

    /// <summary>Holds the caller until its model is ready somewhere (or on <paramref name="pin"/>), its deadline passes, or it leaves.</summary>
    public async ValueTask<Admission> AdmitAsync(string model, LmStudioHost? pin, long deadline, CancellationToken requestAborted)
    {
        if (TryWarm(model, pin) is { } warm) return new(AdmissionStatus.Ready, warm.Host, warm);
        var started = _time.GetTimestamp();

        var key = KnownKey(model, pin);
        if (key is null)
        {
            // A name no host lists (yet): read the hosts' lists once, it may have just been downloaded.
            await RefreshAllAsync(requestAborted);
            key = KnownKey(model, pin);
            if (key is null) return Unknown(model, pin);
        }

        var options = _settings.Current;
        Waiter waiter;
        lock (_lock)
        {
            var group = GroupFor(key, pin);
            if (group.Waiters.Count(w => !w.Background) >= options.MaxHeldPerModel)
            {
                _metrics.HoldEnded(key, "queue_full", TimeSpan.Zero);
                return Admission.Refused(AdmissionStatus.QueueFull, $"{options.MaxHeldPerModel} requests are already waiting for '{key}'.");
            }
            waiter = new Waiter(started, background: false);
            group.Waiters.Add(waiter);
            _waiting++;
            Pump();
        }

        Admission admission;
        var remaining = TimeSpan.FromTicks(Math.Max(0, (long)((deadline - started) * (double)TimeSpan.TicksPerSecond / _time.TimestampFrequency)));
        try
        {
            admission = await waiter.Done.Task.WaitAsync(remaining, _time, requestAborted);
        }
        catch (TimeoutException)
        {
            admission = Abandon(waiter, key, pin) ?? Admission.Refused(AdmissionStatus.HoldTimeout, HoldTimeoutDetail(key, pin, remaining));
        }
        catch (OperationCanceledException) when (requestAborted.IsCancellationRequested)
        {
            admission = Abandon(waiter, key, pin, release: true) ?? Admission.Refused(AdmissionStatus.Cancelled, "The client disconnected while waiting.");
        }
        admission = admission with { Held = _time.GetElapsedTime(started) };
        _metrics.HoldEnded(key, OutcomeName(admission.Status), admission.Held);
        return admission;
    }

    /// <summary>Gives a lease back: the response's last byte was written, or its client left.</summary>
    public void Release(Instance instance)
    {
        if (instance.Release(_time.GetTimestamp()) && (instance.State != InstanceState.Ready || Volatile.Read(ref _waiting) > 0))
        {
            lock (_lock) Pump();
        }
    }

    /// <summary>
    /// LM Studio answered "not loaded" for a model the proxy believed loaded. Its model list says which: evicted (the
    /// request waits for a reload) or still listed (a contradiction; too many in a row is LM Studio's fault).
    /// Returns a refusal for the request, or null to try again.
    /// </summary>
    public async Task<Admission?> ReportNotLoadedAsync(Instance instance, CancellationToken cancellationToken)
    {
        var host = instance.Host;
        _metrics.NotLoadedAbsorbed(instance.ModelKey, host.Name);
        LogNotLoadedAbsorbed(_logger, instance.ModelKey, host.Name);
        long version;
        lock (_lock) version = host.Version;
        ModelCatalog catalog;
        try
        {
            catalog = await host.Api.GetCatalogAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is UpstreamUnavailableException or UpstreamRefusedException)
        {
            lock (_lock)
            {
                Forget(instance, "dropped", "LM Studio answered \"not loaded\"");
                Pump();
            }
            return null;
        }
        lock (_lock)
        {
            if (catalog.Resolve(instance.ModelKey)?.IsLoaded != true)
            {
                instance.Contradictions = 0;
                Forget(instance, "dropped", "LM Studio answered \"not loaded\": evicted");
                Apply(host, catalog, version);
                Pump();
                return null;
            }
            if (++instance.Contradictions < ContradictionsTolerated) return null;
            instance.Contradictions = 0;
            return Admission.Refused(AdmissionStatus.Inconsistent,
                $"LM Studio at {host.Url} lists '{instance.ModelKey}' as loaded but answered \"No models loaded\" to it {ContradictionsTolerated} times in a row. " +
                "LM Studio seems stuck: unload and reload the model (lms unload, lms load) or restart LM Studio's server.");
        }
    }

    /// <summary>A forward to an instance succeeded: a past contradiction no longer counts.</summary>
    public static void ForwardSucceeded(Instance instance)
    {
        if (instance.Contradictions != 0) instance.Contradictions = 0;
    }

    /// <summary>Reads every host's model list and takes it in.</summary>
    public Task RefreshAllAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(_cluster.Hosts.Where(h => !h.Removed).Select(h => RefreshAsync(h, cancellationToken)));

    /// <summary>Reads one host's model list and takes it in (unless a load or unload changed the host meanwhile).</summary>
    public async Task RefreshAsync(LmStudioHost host, CancellationToken cancellationToken)
    {
        long version;
        lock (_lock) version = host.Version;
        try
        {
            var catalog = await host.Api.GetCatalogAsync(cancellationToken);
            lock (_lock)
            {
                Apply(host, catalog, version);
                Pump();
            }
        }
        catch (UpstreamRefusedException ex)
        {
            lock (_lock)
            {
                host.Unverified = true;
                host.LastRefreshError = ex.Message;
            }
        }
        catch (UpstreamUnavailableException ex)
        {
            lock (_lock) host.LastRefreshError = ex.Message;
        }
    }

    /// <summary>Loads a model in the background (preload, operator), through the same queue as requests.</summary>
    public void EnsureLoadedInBackground(string model)
    {
        var key = KnownKey(model, null);
        if (key is null) return;
        lock (_lock)
        {
            var group = GroupFor(key, null);
            if (group.Waiters.Any(w => w.Background) || InstancesOf(key).Any(i => i.State is InstanceState.Ready or InstanceState.Loading)) return;
            group.Waiters.Add(new Waiter(_time.GetTimestamp(), background: true, expires: _time.GetTimestamp() + ToTimestamp(_settings.Current.LoadTimeout)));
            Pump();
        }
    }

    /// <summary>Whether the proxy never unloads the model: preloaded ones, unless an operator unpinned them, and operator pins.</summary>
    public bool IsPinned(string key)
    {
        lock (_operatorPins)
        {
            if (_operatorPins.TryGetValue(key, out var pinned)) return pinned;
        }
        var options = _settings.Current;
        return options.Preload.Any(p => string.Equals(_catalog.Resolve(options.ResolveAlias(p))?.Key ?? options.ResolveAlias(p), key, StringComparison.OrdinalIgnoreCase));
    }

    public void SetPinned(string key, bool pinned)
    {
        lock (_operatorPins) _operatorPins[key] = pinned;
        SavePin(key, pinned); // [state]
        lock (_lock) Pump();
    }

    /// <summary>An operator's unload: idle instances go now, busy ones stop taking requests and go once drained.</summary>
    public string Unload(string key)
    {
        lock (_operatorPins) _operatorPins[key] = false;
        SavePin(key, false); // [state]
        lock (_lock)
        {
            var instances = InstancesOf(key).Where(i => i.State is InstanceState.Ready or InstanceState.Draining).ToList();
            if (instances.Count == 0) return $"'{key}' is not loaded.";
            foreach (var instance in instances)
            {
                instance.UnloadWhenDrained = true;
                instance.SetState(InstanceState.Draining);
            }
            _dirty = true;
            Pump();
            return $"'{key}' takes no new requests and is unloaded once its {instances.Sum(i => i.InFlight)} request(s) in flight finish.";
        }
    }

    public void Dispose()
    {
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
        lock (_lock)
        {
            UnloadIdle();
            Pump();
        }
    }

    private string? KnownKey(string model, LmStudioHost? pin)
    {
        var key = _catalog.Resolve(model)?.Key;
        return key is not null && (pin is null || pin.Catalog.Resolve(key) is not null) ? key : null;
    }

    private Admission Unknown(string model, LmStudioHost? pin)
    {
        var hosts = pin is null ? _cluster.Hosts : [pin];
        if (pin is not null && !pin.IsHealthy) return ConversationHostDown(pin);
        if (hosts.FirstOrDefault(h => h.Unverified && h.IsHealthy) is { } unverified)
        {
            LogUnverified(_logger, model, unverified.Name);
            return new(AdmissionStatus.Unverified, unverified, Detail: unverified.LastRefreshError);
        }
        if (hosts.All(h => h.RefreshedAt is null || !h.IsHealthy) && hosts.Select(h => h.LastRefreshError).FirstOrDefault(e => e is not null) is { } down)
        {
            return Admission.Refused(AdmissionStatus.UpstreamUnavailable, down);
        }
        var available = string.Join(", ", _catalog.Models.Select(m => m.Key).Order(StringComparer.Ordinal));
        return Admission.Refused(AdmissionStatus.NotFound,
            $"The model '{model}' is not downloaded in LM Studio{(hosts.Count > 1 ? " on any host" : "")}. Available models: {(available.Length > 0 ? available : "none")}.");
    }

    internal static Admission ConversationHostDown(LmStudioHost pin) => Admission.Refused(AdmissionStatus.ConversationHostDown,
        $"This conversation's state lives on LM Studio host '{pin.Name}' ({pin.Url}), which is not reachable now. " +
        "It cannot be continued elsewhere; retry when that host is back, or start a new conversation.");

    /// <summary>Takes a waiter out of its group after its deadline or disconnect. Returns its admission if it was granted meanwhile.</summary>
    private Admission? Abandon(Waiter waiter, string key, LmStudioHost? pin, bool release = false)
    {
        lock (_lock)
        {
            if (_groups.TryGetValue(GroupId(key, pin), out var group) && group.Waiters.Remove(waiter))
            {
                _waiting--;
                Pump();
                return null;
            }
        }
        // Granted in the meantime: a client that left gives its lease back; one that timed out keeps its answer.
        var granted = waiter.Done.Task.Result;
        if (release && granted.Instance is { } instance)
        {
            Release(instance);
            return null;
        }
        return granted;
    }

    private string HoldTimeoutDetail(string key, LmStudioHost? pin, TimeSpan waited)
    {
        lock (_lock)
        {
            var situation = _groups.TryGetValue(GroupId(key, pin), out var group) ? group.Situation : null;
            return $"'{key}' was not ready within {waited.TotalSeconds:0} s (LmsProxy:HoldTimeout): {situation ?? "it is still loading"}.";
        }
    }

    // ---- the decision point (all below runs under _lock) ----

    private void Pump()
    {
        var now = _time.GetTimestamp();
        var chosen = new HashSet<Instance>();
        foreach (var group in _groups.Values.OrderBy(g => g.Oldest).ToList())
        {
            group.Waiters.RemoveAll(w => w.Background && w.Expires < now);
            if (group.Waiters.Count == 0)
            {
                _groups.Remove(group.Id);
                continue;
            }
            Serve(group, now, chosen);
        }
        foreach (var host in _cluster.Hosts)
        {
            foreach (var instance in host.Instances.Values.Where(i => i.State == InstanceState.Draining).ToList())
            {
                if (instance.UnloadWhenDrained)
                {
                    if (instance.InFlight == 0 && host.Operation is null) StartUnload(host, instance, "operator");
                }
                else if (!chosen.Contains(instance))
                {
                    // Nobody waits for its room any more: it takes requests again.
                    instance.SetState(InstanceState.Ready);
                    _dirty = true;
                }
            }
        }
        if (_dirty) Publish();
    }

    private void Serve(WaitGroup group, long now, HashSet<Instance> chosen)
    {
        var hosts = _cluster.Hosts.Where(h => !h.Removed && h.Catalog.Resolve(group.Key) is not null && h.Allows(group.Key) && (group.Pin is null || ReferenceEquals(h, group.Pin))).ToList();
        if (hosts.Count == 0)
        {
            Fail(group, group.Pin is { Removed: true } removed ? ConversationHostDown(removed) : Unknown(group.Key, group.Pin));
            return;
        }
        // Healthy hosts first; with none, all of them ("panic"): a load on a host that is really down fails fast.
        var candidates = hosts.Where(h => h.IsHealthy).ToList();
        if (candidates.Count == 0) candidates = hosts;

        var ready = candidates.Select(h => h.Instances.GetValueOrDefault(group.Key)).Where(i => i?.State == InstanceState.Ready).MinBy(i => i!.InFlight);
        if (ready is not null)
        {
            Grant(group, ready, now);
            return;
        }
        if (candidates.Any(h => h.Instances.TryGetValue(group.Key, out var busy) && busy.State != InstanceState.Ready))
        {
            group.Situation ??= "it is loading";
            return;
        }

        var plans = candidates.Select(h => PlanFor(h, group.Key)).ToList();
        var start = plans.Where(p => p.Kind == PlanKind.Fits && p.Host.Operation is null).MaxBy(p => p.Free)
            ?? plans.Where(p => p.Kind == PlanKind.EvictIdle && p.Host.Operation is null).MinBy(p => p.Cost);
        if (start is not null)
        {
            StartLoad(start.Host, group.Key, start.Victims, group);
            return;
        }
        if (plans.FirstOrDefault(p => p.Kind is PlanKind.Fits or PlanKind.EvictIdle or PlanKind.Wait) is { } waitForHost)
        {
            group.Situation = $"waiting for host '{waitForHost.Host.Name}' to finish {waitForHost.Host.Operation ?? "a load or unload"}";
            return;
        }
        if (plans.Where(p => p.Kind == PlanKind.NeedBusy).MinBy(p => p.Cost) is { } swap)
        {
            var busy = string.Join(", ", swap.Victims.Select(v => $"{v.ModelKey} ({v.InFlight} in flight)"));
            var maxWait = swap.Host.Capacity.MaxSwapWait;
            if (_time.GetElapsedTime(group.Oldest, now) >= maxWait)
            {
                // Fairness bound reached: the busy models take no new requests, drain, and make room.
                foreach (var victim in swap.Victims.Where(v => v.State == InstanceState.Ready))
                {
                    victim.SetState(InstanceState.Draining);
                    _dirty = true;
                }
                chosen.UnionWith(swap.Victims);
                group.Situation = $"waiting for {busy} on host '{swap.Host.Name}' to finish, to make room (swap)";
            }
            else
            {
                group.Situation = $"waiting up to {maxWait.TotalSeconds:0} s (Capacity:MaxSwapWait) for room on host '{swap.Host.Name}', where {busy} is busy";
                // Pump again the moment the fairness bound is reached, not at the next tick.
                WakeAt(group.Oldest + ToTimestamp(maxWait), now);
            }
            return;
        }
        Fail(group, Admission.Refused(AdmissionStatus.TooLarge, string.Join(" ", plans.Select(p => p.Reason))));
    }

    private enum PlanKind
    {
        Fits,
        EvictIdle,
        NeedBusy,
        Wait,
        Never,
    }

    private sealed record Plan(LmStudioHost Host, PlanKind Kind, IReadOnlyList<Instance> Victims, long Free = 0, long Cost = 0, string? Reason = null);

    /// <summary>What loading <paramref name="key"/> on <paramref name="host"/> would take.</summary>
    private Plan PlanFor(LmStudioHost host, string key)
    {
        var model = host.Catalog.Resolve(key)!;
        var need = Estimate(host, model);
        if (host.TooLarge.Contains(key))
        {
            return new(host, PlanKind.Never, [], Reason: $"LM Studio on host '{host.Name}' refused '{key}' even with nothing else loaded: {(_lastErrors.TryGetValue((host.Name, key), out var refusal) ? refusal.Message : "not enough memory")}.");
        }
        var budget = Budget(host);
        if (budget > 0 && need > budget)
        {
            return new(host, PlanKind.Never, [], Reason: $"'{key}' needs about {Gb(need)} and host '{host.Name}' has {Gb(budget)} in all (Capacity:MemoryBudgetBytes, or what LM Studio's refusals showed).");
        }
        var maxCount = host.Capacity.MaxLoadedModels;
        var residents = host.Instances.Values.Where(i => i.State != InstanceState.Gone && !string.Equals(i.ModelKey, key, StringComparison.OrdinalIgnoreCase)).ToList();
        var used = residents.Sum(i => i.EstimatedBytes);
        var count = residents.Count;
        bool Fits() => (budget == 0 || used + need <= budget) && (maxCount == 0 || count + 1 <= maxCount);
        if (Fits()) return new(host, PlanKind.Fits, [], Free: budget == 0 ? long.MaxValue - used : budget - used);

        // What can never go decides "never": pinned models, and models loaded outside the proxy (unless EvictForeign).
        bool Stays(Instance i) => IsPinned(i.ModelKey) || (!i.LoadedByProxy && !host.Capacity.EvictForeign);
        var staying = residents.Where(Stays).ToList();
        if ((budget > 0 && staying.Sum(i => i.EstimatedBytes) + need > budget) || (maxCount > 0 && staying.Count + 1 > maxCount))
        {
            var pinned = staying.Where(i => IsPinned(i.ModelKey)).Select(i => i.ModelKey).ToList();
            var foreign = staying.Where(i => !IsPinned(i.ModelKey)).Select(i => i.ModelKey).ToList();
            return new(host, PlanKind.Never, [], Reason: $"Host '{host.Name}' cannot make room for '{key}'" +
                (pinned.Count > 0 ? $": pinned {string.Join(", ", pinned)}" : "") +
                (foreign.Count > 0 ? $"; loaded outside the proxy {string.Join(", ", foreign)} (Capacity:EvictForeign is false)" : "") + ".");
        }

        // Idle first (least recently used first), then busy ones. A model used a moment ago counts as busy: between two
        // requests of a client that sends back to back it has nothing in flight, and unloading it then would thrash.
        var now = _time.GetTimestamp();
        bool Busy(Instance i) => i.InFlight > 0 || (i.State == InstanceState.Ready && _time.GetElapsedTime(i.LastUsed, now) < ActiveWindow);
        var evictable = residents
            .Where(i => i.State is InstanceState.Ready or InstanceState.Draining && !Stays(i))
            .OrderBy(i => Busy(i) ? 1 : 0).ThenBy(i => i.LastUsed);
        var victims = new List<Instance>();
        foreach (var victim in evictable)
        {
            victims.Add(victim);
            used -= victim.EstimatedBytes;
            count--;
            if (!Fits()) continue;
            var cost = victims.Sum(v => v.EstimatedBytes);
            return new(host, victims.Any(Busy) ? PlanKind.NeedBusy : PlanKind.EvictIdle, victims, Cost: cost);
        }
        // Room comes once loads and unloads under way on the host end.
        return new(host, PlanKind.Wait, [], Reason: $"'{key}' waits for the load or unload under way on host '{host.Name}'.");
    }

    private static long Budget(LmStudioHost host)
    {
        var configured = host.Capacity.MemoryBudgetBytes;
        var learned = host.LearnedCeilingBytes;
        return configured > 0 && learned > 0 ? Math.Min(configured, learned) : Math.Max(configured, learned);
    }

    /// <summary>
    /// A model's memory: what LM Studio's refusal said it needs, else its file size plus 10% and its context's KV cache
    /// (about 24 KiB per token per GB of model, at least 16 KiB per token).
    /// </summary>
    private long Estimate(LmStudioHost host, CatalogModel model)
    {
        if (_learnedFootprint.TryGetValue(model.Key, out var learned)) return learned;
        var size = model.SizeBytes > 0 ? model.SizeBytes : 1L << 30;
        var context = host.Instances.GetValueOrDefault(model.Key)?.LmStudioInstances.FirstOrDefault()?.ContextLength
            ?? _settings.Current.SettingsFor(model.Key).ContextLength ?? 4096;
        var perToken = Math.Max(16 * 1024, (long)(size / 1e9 * 24 * 1024));
        return (long)(size * 1.1) + context * perToken;
    }

    private void Grant(WaitGroup group, Instance instance, long now)
    {
        foreach (var waiter in group.Waiters)
        {
            if (waiter.Background)
            {
                waiter.Done.TrySetResult(new(AdmissionStatus.Ready, instance.Host));
                continue;
            }
            instance.Admit(now);
            if (!waiter.Done.TrySetResult(new(AdmissionStatus.Ready, instance.Host, instance))) instance.Release(now);
        }
        _waiting -= group.Waiters.Count(w => !w.Background);
        group.Waiters.Clear();
        _groups.Remove(group.Id);
    }

    private void Fail(WaitGroup group, Admission refusal)
    {
        foreach (var waiter in group.Waiters) waiter.Done.TrySetResult(refusal);
        _waiting -= group.Waiters.Count(w => !w.Background);
        group.Waiters.Clear();
        _groups.Remove(group.Id);
    }

    private void FailModel(string key, LmStudioHost host, Admission refusal)
    {
        foreach (var group in _groups.Values.Where(g => string.Equals(g.Key, key, StringComparison.OrdinalIgnoreCase) && (g.Pin is null || ReferenceEquals(g.Pin, host))).ToList())
        {
            Fail(group, refusal);
        }
    }

    private void StartLoad(LmStudioHost host, string key, IReadOnlyList<Instance> victims, WaitGroup? group)
    {
        var unloading = new List<Instance>();
        foreach (var victim in victims)
        {
            if (victim.TryBeginUnload())
            {
                unloading.Add(victim);
                continue;
            }
            // A request took the victim between plan and now: put back what was taken, plan again on the next pump.
            foreach (var taken in unloading) taken.SetState(InstanceState.Ready);
            _dirty = true;
            return;
        }
        var model = host.Catalog.Resolve(key)!;
        var instance = new Instance(host, model.Key, loadedByProxy: true, Estimate(host, model))
        {
            Forwarded = _metrics.RequestCounter(model.Key, host.Name, "forwarded"),
            LoadStartedAt = _time.GetUtcNow(),
        };
        host.Instances[model.Key] = instance;
        host.Version++;
        host.Operation = unloading.Count == 0 ? $"loading {model.Key}" : $"unloading {string.Join(", ", unloading.Select(v => v.ModelKey))} to load {model.Key}";
        if (group is not null) group.Situation = $"'{model.Key}' is loading on host '{host.Name}'";
        _dirty = true;
        _ = Task.Run(() => RunLoadAsync(host, model, instance, unloading));
    }

    private async Task RunLoadAsync(LmStudioHost host, CatalogModel model, Instance instance, List<Instance> victims)
    {
        var options = _settings.Current;
        using var timeout = new CancellationTokenSource(options.LoadTimeout, _time);
        var started = Stopwatch.GetTimestamp();
        try
        {
            // Loaded already (the LM Studio app, JIT)? One REST call, no process.
            var before = await host.Api.GetCatalogAsync(timeout.Token);
            if (before.Resolve(model.Key) is { IsLoaded: true } already)
            {
                lock (_lock)
                {
                    foreach (var victim in victims) victim.SetState(InstanceState.Ready);
                    instance.LoadedByProxy = false;
                    Ready(instance, already.Instances);
                    Apply(host, before, host.Version, force: true);
                }
                return;
            }

            // "refusal" when only what LM Studio's refusals taught made the room necessary, "capacity" when the configured limits did.
            var reason = host.LearnedCeilingBytes > 0 && host.Capacity.MaxLoadedModels == 0 &&
                (host.Capacity.MemoryBudgetBytes == 0 || host.LearnedCeilingBytes < host.Capacity.MemoryBudgetBytes) ? "refusal" : "capacity";
            foreach (var victim in victims) await UnloadInstanceAsync(host, victim, reason, timeout.Token);
            if (victims.Count > 0)
            {
                _metrics.Swapped(host.Name);
                Interlocked.Increment(ref _swapCount);
                Events.Add(new(_time.GetUtcNow(), "swap", host.Name, model.Key, $"unloaded {string.Join(", ", victims.Select(v => v.ModelKey))}"));
            }

            LogLoadStarted(_logger, model.Key, host.Name, host.Loader.Name);
            Events.LoadStarting(host.Name, model.Key); // [activity] waiting requests are "loading" now
            await host.Loader.Loader.LoadAsync(model, options.SettingsFor(model.Key), timeout.Token);

            // Verify from the REST list (one HTTP call): the model may already be gone again (another app, a user).
            var after = await host.Api.GetCatalogAsync(timeout.Token);
            var elapsed = Stopwatch.GetElapsedTime(started);
            lock (_lock)
            {
                if (after.Resolve(model.Key) is { IsLoaded: true } loaded)
                {
                    _vanishedLoads.Remove((host.Name, model.Key));
                    _lastErrors.Remove((host.Name, model.Key));
                    _lastLoadDurations[(host.Name, model.Key)] = elapsed;
                    SaveLoadTime(host.Name, model.Key, elapsed); // [state]
                    Ready(instance, loaded.Instances);
                    LearnFromSuccess(host);
                    _metrics.LoadEnded(model.Key, host.Name, "success", elapsed);
                    Events.Add(new(_time.GetUtcNow(), "load", host.Name, model.Key, DurationMs: elapsed.TotalMilliseconds));
                    LogLoaded(_logger, model.Key, host.Name, elapsed.TotalMilliseconds);
                }
                else
                {
                    // Not a failure: the load worked and the model went again. Its waiters stay, the next pump reloads it.
                    Forget(instance, "dropped", "gone right after its load");
                    var vanished = _vanishedLoads[(host.Name, model.Key)] = _vanishedLoads.GetValueOrDefault((host.Name, model.Key)) + 1;
                    LogVanished(_logger, model.Key, host.Name, vanished);
                    if (vanished >= VanishedLoadsTolerated)
                    {
                        _vanishedLoads.Remove((host.Name, model.Key));
                        FailModel(model.Key, host, Admission.Refused(AdmissionStatus.LoadFailed,
                            $"LM Studio at {host.Url} reported loading '{model.Key}' {vanished} times, but never listed it afterwards."));
                    }
                }
                Apply(host, after, host.Version, force: true);
            }
        }
        catch (ModelLoadException ex) when (ex.Kind != LoadFailureKind.Other && !timeout.IsCancellationRequested)
        {
            lock (_lock) Refused(host, model, instance, ex, Stopwatch.GetElapsedTime(started));
        }
        catch (ModelLoadException ex)
        {
            lock (_lock) LoadFailed(host, model.Key, instance, ex.Message, Stopwatch.GetElapsedTime(started));
        }
        catch (UpstreamUnavailableException ex)
        {
            _cluster.ReportUnreachable(host);
            lock (_lock)
            {
                Forget(instance, null, null);
                host.LastRefreshError = ex.Message;
                // Requests that can go nowhere else get the reason now; the others are placed on another host.
                foreach (var group in _groups.Values.Where(g => string.Equals(g.Key, model.Key, StringComparison.OrdinalIgnoreCase)).ToList())
                {
                    if (ReferenceEquals(group.Pin, host)) Fail(group, ConversationHostDown(host));
                    else if (!_cluster.Hosts.Any(h => !ReferenceEquals(h, host) && h.IsHealthy && h.Catalog.Resolve(model.Key) is not null && h.Allows(model.Key)))
                    {
                        Fail(group, Admission.Refused(AdmissionStatus.UpstreamUnavailable, ex.Message));
                    }
                }
            }
        }
        catch (UpstreamRefusedException ex)
        {
            lock (_lock)
            {
                Forget(instance, null, null);
                host.Unverified = true;
                host.LastRefreshError = ex.Message;
                foreach (var group in _groups.Values.Where(g => string.Equals(g.Key, model.Key, StringComparison.OrdinalIgnoreCase)).ToList())
                {
                    Fail(group, new(AdmissionStatus.Unverified, host, Detail: ex.Message));
                }
            }
        }
        catch (OperationCanceledException)
        {
            lock (_lock) LoadFailed(host, model.Key, instance, $"Loading '{model.Key}' did not finish within {options.LoadTimeout.TotalSeconds:0} s (LmsProxy:LoadTimeout).", Stopwatch.GetElapsedTime(started));
        }
        finally
        {
            lock (_lock)
            {
                // A victim whose unload did not happen (the load stopped first) is still loaded: it serves again.
                foreach (var victim in victims.Where(v => v.State == InstanceState.Unloading)) victim.SetState(InstanceState.Ready);
                EndOperation(host);
            }
        }
    }

    private async Task UnloadInstanceAsync(LmStudioHost host, Instance victim, string reason, CancellationToken cancellationToken)
    {
        foreach (var id in victim.LmStudioInstances.Select(i => i.Id).DefaultIfEmpty(victim.ModelKey))
        {
            await host.Loader.Loader.UnloadAsync(id, cancellationToken);
        }
        lock (_lock)
        {
            Forget(victim, null, null);
            _unloadCounts[reason] = _unloadCounts.GetValueOrDefault(reason) + 1;
            _metrics.Unloaded(victim.ModelKey, host.Name, reason);
            Events.Add(new(_time.GetUtcNow(), "unload", host.Name, victim.ModelKey, reason));
            LogUnloaded(_logger, victim.ModelKey, host.Name, reason);
        }
    }

    private void StartUnload(LmStudioHost host, Instance instance, string reason)
    {
        if (!instance.TryBeginUnload()) return;
        host.Operation = $"unloading {instance.ModelKey} ({reason})";
        host.Version++;
        _dirty = true;
        _ = Task.Run(async () =>
        {
            using var timeout = new CancellationTokenSource(_settings.Current.LoadTimeout, _time);
            try
            {
                await UnloadInstanceAsync(host, instance, reason, timeout.Token);
            }
            catch (Exception ex) when (ex is ModelLoadException or UpstreamUnavailableException or UpstreamRefusedException or OperationCanceledException)
            {
                LogUnloadFailed(_logger, instance.ModelKey, host.Name, ex.Message);
                lock (_lock) instance.SetState(InstanceState.Ready);
            }
            finally
            {
                lock (_lock) EndOperation(host);
            }
        });
    }

    /// <summary>The host's load or unload is over (under the lock): the host is free again, and the queue is served.</summary>
    private void EndOperation(LmStudioHost host)
    {
        host.Operation = null;
        host.Version++;
        _dirty = true;
        Pump();
    }

    private void UnloadIdle()
    {
        var now = _time.GetTimestamp();
        foreach (var host in _cluster.Hosts.Where(h => h.Operation is null && h.Capacity.IdleUnloadAfter > TimeSpan.Zero))
        {
            var idle = host.Instances.Values.FirstOrDefault(i =>
                i.State == InstanceState.Ready && i.InFlight == 0 && (i.LoadedByProxy || host.Capacity.EvictForeign) && !IsPinned(i.ModelKey) &&
                _time.GetElapsedTime(i.LastUsed, now) >= host.Capacity.IdleUnloadAfter);
            if (idle is not null) StartUnload(host, idle, "idle");
        }
    }

    /// <summary>LM Studio refused for lack of memory: learn the host's ceiling (and the model's size, when it said), then plan again.</summary>
    private void Refused(LmStudioHost host, CatalogModel model, Instance instance, ModelLoadException ex, TimeSpan elapsed)
    {
        Forget(instance, null, null);
        _metrics.LoadEnded(model.Key, host.Name, "refused", elapsed);
        Events.Add(new(_time.GetUtcNow(), "refusal", host.Name, model.Key, Excerpt.Of(ex.Message, 160)));
        LogRefused(_logger, model.Key, host.Name, ex.Message);
        _lastErrors[(host.Name, model.Key)] = (ex.Message, _time.GetUtcNow());
        if (ex.RequiredBytes is { } required) _learnedFootprint[model.Key] = required;
        if (ex.RequiredBytes is { } footprint) SaveFootprint(model.Key, footprint); // [state]
        var residents = host.Instances.Values.Where(i => i.State != InstanceState.Gone).ToList();
        if (residents.Count == 0)
        {
            host.TooLarge.Add(model.Key);
            return;
        }
        if (ex.Kind == LoadFailureKind.Ambiguous && !residents.Any(i => i.InFlight == 0 && i.LoadedByProxy && !IsPinned(i.ModelKey)))
        {
            // An engine failure that may not be memory at all: one retry after making room, not a wait for busy models.
            LoadFailed(host, model.Key, instance, ex.Message, elapsed);
            return;
        }
        var ceiling = residents.Sum(i => i.EstimatedBytes) + Estimate(host, model) - 1;
        host.LearnedCeilingBytes = host.LearnedCeilingBytes == 0 ? ceiling : Math.Min(host.LearnedCeilingBytes, ceiling);
        SaveCeiling(host); // [state]
    }

    private void LearnFromSuccess(LmStudioHost host)
    {
        var used = host.Instances.Values.Where(i => i.State != InstanceState.Gone).Sum(i => i.EstimatedBytes);
        if (host.LearnedCeilingBytes > 0 && used > host.LearnedCeilingBytes)
        {
            host.LearnedCeilingBytes = used;
            SaveCeiling(host); // [state]
        }
    }

    private void LoadFailed(LmStudioHost host, string key, Instance instance, string message, TimeSpan elapsed)
    {
        Forget(instance, null, null);
        _lastErrors[(host.Name, key)] = (message, _time.GetUtcNow());
        _metrics.LoadEnded(key, host.Name, "failure", elapsed);
        Events.Add(new(_time.GetUtcNow(), "failure", host.Name, key, Excerpt.Of(message, 160)));
        LogLoadFailed(_logger, key, host.Name, message);
        FailModel(key, host, Admission.Refused(AdmissionStatus.LoadFailed, message));
    }

    private void Ready(Instance instance, IReadOnlyList<LoadedInstance> lmStudioInstances)
    {
        instance.LmStudioInstances = lmStudioInstances;
        instance.LoadedAt = _time.GetUtcNow();
        instance.Touch(_time.GetTimestamp());
        instance.SetState(InstanceState.Ready);
        instance.Host.Version++;
        _dirty = true;
    }

    /// <summary>The instance is no longer loaded (unloaded, evicted, failed to load).</summary>
    private void Forget(Instance instance, string? eventKind, string? why)
    {
        var host = instance.Host;
        if (host.Instances.TryGetValue(instance.ModelKey, out var current) && ReferenceEquals(current, instance))
        {
            host.Instances.Remove(instance.ModelKey);
            host.Version++;
            if (eventKind is not null) Events.Add(new(_time.GetUtcNow(), eventKind, host.Name, instance.ModelKey, why));
        }
        instance.SetState(InstanceState.Gone);
        _dirty = true;
    }

    /// <summary>Takes in a host's model list: what LM Studio loaded or dropped on its own since the proxy last looked.</summary>
    private void Apply(LmStudioHost host, ModelCatalog catalog, long versionBeforeRead, bool force = false)
    {
        host.Catalog = catalog;
        host.RefreshedAt = _time.GetUtcNow();
        host.LastRefreshError = null;
        host.Unverified = false;
        _dirty = true;
        // A load or unload that ran while the list was read knows better than the list.
        if (!force && (host.Version != versionBeforeRead || host.Operation is not null)) return;
        foreach (var model in catalog.Models.Where(m => m.IsLoaded))
        {
            if (host.Instances.TryGetValue(model.Key, out var known))
            {
                if (known.State is InstanceState.Ready or InstanceState.Draining) known.LmStudioInstances = model.Instances;
                continue;
            }
            var found = new Instance(host, model.Key, loadedByProxy: false, Estimate(host, model with { Instances = model.Instances }))
            {
                Forwarded = _metrics.RequestCounter(model.Key, host.Name, "forwarded"),
            };
            host.Instances[model.Key] = found;
            Ready(found, model.Instances);
            Events.Add(new(_time.GetUtcNow(), "found", host.Name, model.Key, "loaded outside the proxy"));
        }
        foreach (var instance in host.Instances.Values.Where(i => i.State is InstanceState.Ready or InstanceState.Draining).ToList())
        {
            if (catalog.Resolve(instance.ModelKey)?.IsLoaded != true) Forget(instance, "dropped", "LM Studio no longer lists it");
        }
    }

    /// <summary>Rebuilds what the warm path reads: every name of every ready instance, and the union catalog.</summary>
    private void Publish()
    {
        _dirty = false;
        var hosts = _cluster.Hosts;
        _severalHosts = hosts.Count > 1;
        var catalog = ModelCatalog.Union(hosts.Where(h => !h.Removed).Select(h => h.Catalog));
        _catalog = catalog;
        var names = new Dictionary<string, List<Instance>>(StringComparer.OrdinalIgnoreCase);
        foreach (var instance in hosts.Where(h => !h.Removed).SelectMany(h => h.Instances.Values).Where(i => i.State == InstanceState.Ready))
        {
            foreach (var name in catalog.NamesOf(instance.ModelKey).Concat(instance.LmStudioInstances.Select(i => i.Id)).Distinct(StringComparer.OrdinalIgnoreCase))
            {
                if (!names.TryGetValue(name, out var list)) names[name] = list = [];
                list.Add(instance);
            }
        }
        _ready = names.ToFrozenDictionary(n => n.Key, n => n.Value.ToArray(), StringComparer.OrdinalIgnoreCase);
    }

    private IEnumerable<Instance> InstancesOf(string key) =>
        _cluster.Hosts.Select(h => h.Instances.GetValueOrDefault(key)).OfType<Instance>();

    private int SpillThreshold(Instance instance) => instance.Host.Capacity.SpillAt > 0 ? instance.Host.Capacity.SpillAt : instance.Parallel;

    /// <summary>Every ready instance of a model is saturated: load a second instance on a host with room, without unloading anything.</summary>
    private void RequestSpill(string key)
    {
        lock (_lock)
        {
            var instances = InstancesOf(key).ToList();
            if (instances.Any(i => i.State != InstanceState.Ready || i.InFlight < SpillThreshold(i))) return;
            var target = _cluster.Hosts
                .Where(h => !h.Removed && h.IsHealthy && h.Operation is null && !h.Instances.ContainsKey(key) && h.Catalog.Resolve(key) is not null && h.Allows(key))
                .Select(h => PlanFor(h, key)).Where(p => p.Kind == PlanKind.Fits).MaxBy(p => p.Free);
            if (target is null) return;
            LogSpill(_logger, key, target.Host.Name);
            Events.Add(new(_time.GetUtcNow(), "spill", target.Host.Name, key, "every loaded instance is saturated"));
            StartLoad(target.Host, key, [], null);
            if (_dirty) Publish();
        }
    }

    private WaitGroup GroupFor(string key, LmStudioHost? pin)
    {
        var id = GroupId(key, pin);
        if (!_groups.TryGetValue(id, out var group)) _groups[id] = group = new WaitGroup(id, key, pin);
        return group;
    }

    private static string GroupId(string key, LmStudioHost? pin) => pin is null ? key : key + "\n" + pin.Name;

    private long ToTimestamp(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    private static string Gb(long bytes) => $"{bytes / 1e9:0.0} GB";

    private static string OutcomeName(AdmissionStatus status) => status switch
    {
        AdmissionStatus.NotFound => "not_found",
        AdmissionStatus.LoadFailed => "load_failed",
        AdmissionStatus.UpstreamUnavailable => "upstream_unavailable",
        AdmissionStatus.HoldTimeout => "hold_timeout",
        AdmissionStatus.QueueFull => "queue_full",
        AdmissionStatus.TooLarge => "too_large",
        AdmissionStatus.ConversationHostDown => "conversation_host_down",
        _ => status.ToString().ToLowerInvariant(),
    };

    private sealed class WaitGroup(string id, string key, LmStudioHost? pin)
    {
        public string Id { get; } = id;
        public string Key { get; } = key;
        public LmStudioHost? Pin { get; } = pin;
        public List<Waiter> Waiters { get; } = [];
        public string? Situation { get; set; }
        public long Oldest => Waiters.Count > 0 ? Waiters.Min(w => w.Enqueued) : long.MaxValue;
    }

    private sealed class Waiter(long enqueued, bool background, long expires = long.MaxValue)
    {
        public long Enqueued { get; } = enqueued;
        public bool Background { get; } = background;
        public long Expires { get; } = expires;
        public TaskCompletionSource<Admission> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "Loading {Model} on {Host} with {Loader}")]
    private static partial void LogLoadStarted(ILogger logger, string model, string host, string loader);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "Loaded {Model} on {Host} in {DurationMs:0} ms")]
    private static partial void LogLoaded(ILogger logger, string model, string host, double durationMs);

    [LoggerMessage(EventId = 22, Level = LogLevel.Warning, Message = "Loading {Model} on {Host} failed: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 23, Level = LogLevel.Warning, Message = "Cannot check whether {Model} is loaded on {Host}, forwarding as it is")]
    private static partial void LogUnverified(ILogger logger, string model, string host);

    [LoggerMessage(EventId = 24, Level = LogLevel.Warning, Message = "LM Studio on {Host} refused to load {Model} for lack of memory; making room: {Reason}")]
    private static partial void LogRefused(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 25, Level = LogLevel.Information, Message = "Unloaded {Model} from {Host} ({Reason})")]
    private static partial void LogUnloaded(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 26, Level = LogLevel.Warning, Message = "Unloading {Model} from {Host} failed: {Reason}")]
    private static partial void LogUnloadFailed(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 27, Level = LogLevel.Warning, Message = "{Model} was loaded on {Host} but is gone again ({Count} in a row); loading it again")]
    private static partial void LogVanished(ILogger logger, string model, string host, int count);

    [LoggerMessage(EventId = 28, Level = LogLevel.Warning, Message = "LM Studio answered that {Model} is not loaded on {Host}; loading it and re-sending")]
    private static partial void LogNotLoadedAbsorbed(ILogger logger, string model, string host);

    [LoggerMessage(EventId = 29, Level = LogLevel.Information, Message = "Every instance of {Model} is saturated: loading another on {Host}")]
    private static partial void LogSpill(ILogger logger, string model, string host);
}
