using LmsProxy.Configuration;
using LmsProxy.Hosts;
using LmsProxy.Loading;

namespace LmsProxy.Scheduling;

/// <summary>What operators see of the scheduler: /status and the status page's snapshot, and the gauges /metrics reads.</summary>
internal sealed partial class Scheduler
{
    public StatusSnapshot Snapshot()
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var held = _groups.Values.GroupBy(g => g.Key, StringComparer.OrdinalIgnoreCase)
                .ToDictionary(g => g.Key, g => (Count: g.Sum(x => x.Held), Situation: g.Select(x => x.Situation).FirstOrDefault(s => s is not null)), StringComparer.OrdinalIgnoreCase);
            var hosts = _cluster.Hosts.Select(h => new HostSnapshot(
                h.Name, h.Url, h.IsHealthy, h.Loader, h.RefreshedAt, h.LastRefreshError, h.Operation, h.Capacity, Budget(h), h.LearnedCeilingBytes,
                [.. h.Instances.Values.Select(i => new InstanceSnapshot(
                    i.ModelKey, i.State, i.InFlight, i.LoadedByProxy, IsPinned(i.ModelKey), i.EstimatedBytes, i.Parallel,
                    i.LastUsed == 0 ? null : _time.GetUtcNow() - _time.GetElapsedTime(i.LastUsed, now), i.LoadedAt, i.LoadStartedAt,
                    [.. i.LmStudioInstances.Select(x => x.Id)],
                    _lastLoadDurations.TryGetValue((h.Name, i.ModelKey), out var d) ? d.TotalMilliseconds : null) { Load = i.State == InstanceState.Loading ? EstimateOf(i, now) : null })],
                [.. h.Catalog.Models.Select(m => m.Key)])).ToList();
            var models = _catalog.Models.Select(m => m.Key).Concat(held.Keys).Distinct(StringComparer.OrdinalIgnoreCase).Select(key => new ModelSnapshot(
                key,
                _catalog.Resolve(key)?.Type,
                held.TryGetValue(key, out var h) ? h.Count : 0,
                held.TryGetValue(key, out var s) ? s.Situation : null,
                IsPinned(key),
                _lastLoadDurations.Where(l => string.Equals(l.Key.Model, key, StringComparison.OrdinalIgnoreCase)).Select(l => (double?)l.Value.TotalMilliseconds).LastOrDefault(),
                _lastErrors.Where(l => string.Equals(l.Key.Model, key, StringComparison.OrdinalIgnoreCase)).Select(l => l.Value.Message).LastOrDefault(),
                _lastErrors.Where(l => string.Equals(l.Key.Model, key, StringComparison.OrdinalIgnoreCase)).Select(l => (DateTimeOffset?)l.Value.At).LastOrDefault())).ToList();
            return new StatusSnapshot(hosts, models, Events.Recent(), new Dictionary<string, int>(_unloadCounts), _swapCount) { Queues = QueueSnapshots(now) };
        }
    }

    /// <summary>Each model key some host has loaded or is loading: "loaded" or "loading" (for /v1/models; absent: unloaded).</summary>
    public Dictionary<string, string> LoadStates()
    {
        var states = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        lock (_lock)
        {
            foreach (var instance in _cluster.Hosts.Where(h => !h.Removed).SelectMany(h => h.Instances.Values))
            {
                if (instance.State is InstanceState.Ready or InstanceState.Draining) states[instance.ModelKey] = "loaded";
                else if (instance.State == InstanceState.Loading) states.TryAdd(instance.ModelKey, "loading");
            }
        }
        return states;
    }

    private IEnumerable<System.Diagnostics.Metrics.Measurement<long>> ObserveHeld()
    {
        Dictionary<string, int> held;
        lock (_lock)
        {
            held = _groups.Values.GroupBy(g => g.Key, StringComparer.OrdinalIgnoreCase)
                .ToDictionary(g => g.Key, g => g.Sum(x => x.Held), StringComparer.OrdinalIgnoreCase);
        }
        foreach (var model in _catalog.Models) held.TryAdd(model.Key, 0);
        return held.Select(h => new System.Diagnostics.Metrics.Measurement<long>(h.Value, new KeyValuePair<string, object?>("model", h.Key)));
    }

    private List<HostedModel> AllInstances()
    {
        lock (_lock) return [.. _cluster.Hosts.SelectMany(h => h.Instances.Values).Where(i => i.State != InstanceState.Gone)];
    }

    private IEnumerable<System.Diagnostics.Metrics.Measurement<long>> ObserveInstances(Func<HostedModel, long> value) =>
        AllInstances().Select(i => new System.Diagnostics.Metrics.Measurement<long>(value(i), new("model", i.ModelKey), new("host", i.Host.Name)));

    private IEnumerable<System.Diagnostics.Metrics.Measurement<int>> ObserveStates() =>
        AllInstances().Select(i => new System.Diagnostics.Metrics.Measurement<int>(1, new("model", i.ModelKey), new("host", i.Host.Name),
            new("state", i.State == InstanceState.Ready ? (i.InFlight > 0 ? "busy" : "idle") : i.State.ToString().ToLowerInvariant())));

    private IEnumerable<System.Diagnostics.Metrics.Measurement<long>> ObserveMemory()
    {
        lock (_lock)
        {
            return [.. _cluster.Hosts.Select(h => new System.Diagnostics.Metrics.Measurement<long>(
                h.Instances.Values.Where(i => i.State != InstanceState.Gone).Sum(i => i.EstimatedBytes), new KeyValuePair<string, object?>("host", h.Name)))];
        }
    }
}

internal sealed record StatusSnapshot(IReadOnlyList<HostSnapshot> Hosts, IReadOnlyList<ModelSnapshot> Models, IReadOnlyList<CapacityEvent> Events,
    IReadOnlyDictionary<string, int> Unloads, int Swaps)
{
    /// <summary>The waiting requests, per model (and pinned host) queue.</summary>
    public IReadOnlyList<QueueSnapshot> Queues { get; init; } = [];
}

internal sealed record HostSnapshot(string Name, Uri Url, bool Healthy, LoaderChoice Loader, DateTimeOffset? RefreshedAt, string? LastError, string? Operation,
    CapacityOptions Capacity, long BudgetBytes, long LearnedCeilingBytes, IReadOnlyList<InstanceSnapshot> Instances, IReadOnlyList<string> Downloaded);

internal sealed record InstanceSnapshot(string Model, InstanceState State, int InFlight, bool LoadedByProxy, bool Pinned, long EstimatedBytes, int Parallel,
    DateTimeOffset? LastUsedAt, DateTimeOffset? LoadedAt, DateTimeOffset? LoadStartedAt, IReadOnlyList<string> Ids, double? LastLoadMs)
{
    /// <summary>While it loads: how far, from where, and the time left.</summary>
    public Scheduler.LoadEstimate? Load { get; init; }
}

internal sealed record ModelSnapshot(string Key, string? Type, int Held, string? Situation, bool Pinned, double? LastLoadMs, string? LastError, DateTimeOffset? LastErrorAt);
