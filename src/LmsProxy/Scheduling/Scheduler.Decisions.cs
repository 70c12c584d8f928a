using LmsProxy.Hosts;
using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Scheduling;

/// <summary>The decision point: the state as a snapshot to the pure policy (Policy/PlacementPolicy.cs), and its decisions applied in order, under the lock.</summary>
internal sealed partial class Scheduler
{
    // ---- the decision point (under _lock): the state as a snapshot to the policy, its decisions applied in order ----

    private void Pump()
    {
        var now = _time.GetTimestamp();
        foreach (var group in _groups.Values.ToList())
        {
            group.Waiters.RemoveAll(w => w.Background && w.Expires < now); // background waiters are not counted in Held
            if (group.Waiters.Count == 0) _groups.Remove(group.Id);
        }
        foreach (var decision in PlacementPolicy.Decide(PolicyView(now, null))) Execute(decision, now);
        foreach (var host in _cluster.Hosts)
        {
            foreach (var instance in host.Instances.Values)
            {
                if (instance.UnloadWhenDrained && instance.UnloadRetryAt > now) WakeAt(instance.UnloadRetryAt, now);
            }
        }
        if (_dirty) Publish();
    }

    /// <summary>What the policy sees: hosts (healthy, busy, limits, budget, instances), and what loading each waiting model takes where.</summary>
    private PolicySnapshot PolicyView(long now, string? alsoModel)
    {
        var keys = _groups.Values.Select(g => g.Key).Append(alsoModel).OfType<string>().Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        var hosts = new List<HostView>();
        foreach (var host in _cluster.Hosts)
        {
            if (host.Removed) continue;
            var models = new Dictionary<string, ModelFit>(StringComparer.OrdinalIgnoreCase);
            foreach (var key in keys)
            {
                if (host.Catalog.Resolve(key) is not { } model || !host.Allows(key)) continue;
                var never = host.TooLarge.TryGetValue(key, out var until) && until > now
                    ? $"LM Studio on host '{host.Name}' refused '{key}' even with nothing else loaded: {(_lastErrors.TryGetValue((host.Name, key), out var refusal) ? refusal.Message : "not enough memory")}."
                    : null;
                models[key] = new ModelFit(Estimate(host, model), never, LastLoadTime(host, key));
            }
            hosts.Add(new HostView(host.Name, host.IsHealthy, host.Operation is not null, host.Limits, Budget(host),
                [.. host.Instances.Values.Select(i => new InstanceView(i.ModelKey, i.State, i.InFlight, i.Parallel, i.LastUsed, i.LoadedAtTimestamp, i.EstimatedBytes,
                    i.LoadedByProxy, IsPinned(i.ModelKey), i.UnloadWhenDrained, i.UnloadRetryAt, LastLoadTime(host, i.ModelKey)))],
                models));
        }
        return new PolicySnapshot(now, _time.TimestampFrequency, hosts, [.. _groups.Values.Select(g => new GroupView(g.Id, g.Key, g.Pin?.Name, g.Oldest, g.Held, g.Priority))]);
    }

    private TimeSpan? LastLoadTime(LmStudioHost host, string key) => _lastLoadDurations.TryGetValue((host.Name, key), out var d) ? d : null;

    private void Execute(Decision decision, long now)
    {
        switch (decision)
        {
            case GrantDecision grant when _groups.TryGetValue(grant.GroupId, out var group):
                Grant(group, [.. grant.Hosts.Select(h => InstanceAt(h, group.Key)).OfType<HostedModel>()], now);
                break;
            case LoadDecision load when HostNamed(load.Host) is { } host:
                var waiting = load.GroupId is { } id ? _groups.GetValueOrDefault(id) : null;
                if (load.GroupId is null)
                {
                    LogSpill(_logger, load.Model, host.Name);
                    Events.Add(new(_time.GetUtcNow(), "spill", host.Name, load.Model, "every loaded instance is saturated"));
                }
                StartLoad(host, load.Model, [.. load.Victims.Select(v => InstanceAt(load.Host, v)).OfType<HostedModel>()], waiting);
                break;
            case DrainDecision drain when InstanceAt(drain.Host, drain.Model) is { State: InstanceState.Ready } victim:
                victim.SetState(InstanceState.Draining);
                _dirty = true;
                break;
            case ReviveDecision revive when InstanceAt(revive.Host, revive.Model) is { State: InstanceState.Draining } revived:
                revived.SetState(InstanceState.Ready);
                _dirty = true;
                break;
            case UnloadDecision unload when InstanceAt(unload.Host, unload.Model) is { } instance:
                StartUnload(instance.Host, instance, unload.Reason);
                break;
            case WaitDecision wait when _groups.TryGetValue(wait.GroupId, out var group):
                // "it is loading" does not replace the more precise sentence StartLoad wrote.
                if (wait.Situation != "it is loading" || group.Situation is null) group.Situation = wait.Situation;
                if (wait.WakeAt is { } at) WakeAt(at, now);
                break;
            case RefuseDecision refuse when _groups.TryGetValue(refuse.GroupId, out var group):
                Fail(group, refuse.Status switch
                {
                    AdmissionStatus.NotFound => Unknown(group.Key, group.Pin),
                    AdmissionStatus.ConversationHostDown => ConversationHostDown(group.Pin!),
                    _ => Admission.Refusal(refuse.Status, refuse.Reason),
                });
                break;
        }
    }

    private LmStudioHost? HostNamed(string name) => _cluster.Hosts.FirstOrDefault(h => !h.Removed && h.Name == name);

    private HostedModel? InstanceAt(string host, string model) => HostNamed(host)?.Instances.GetValueOrDefault(model);

    /// <summary>Releases the whole group onto the ready instances, each waiter to the least loaded one for its slots.</summary>
    private void Grant(WaitGroup group, List<HostedModel> ready, long now)
    {
        foreach (var waiter in group.Waiters)
        {
            var instance = ready[0];
            foreach (var other in ready)
            {
                if (other.InFlight * instance.Parallel < instance.InFlight * other.Parallel) instance = other;
            }
            if (waiter.Background)
            {
                waiter.Done.TrySetResult(new(AdmissionStatus.Granted, instance.Host));
                continue;
            }
            instance.Admit(now);
            if (!waiter.Done.TrySetResult(new(AdmissionStatus.Granted, instance.Host, instance))) instance.Release(now);
        }
        _waiting -= group.Held;
        group.Clear();
        _groups.Remove(group.Id);
    }

    private void Fail(WaitGroup group, Admission refusal)
    {
        foreach (var waiter in group.Waiters) waiter.Done.TrySetResult(refusal);
        _waiting -= group.Held;
        group.Clear();
        _groups.Remove(group.Id);
    }

    private void FailModel(string key, LmStudioHost host, Admission refusal)
    {
        foreach (var group in _groups.Values.Where(g => string.Equals(g.Key, key, StringComparison.OrdinalIgnoreCase) && (g.Pin is null || ReferenceEquals(g.Pin, host))).ToList())
        {
            Fail(group, refusal);
        }
    }

    private IEnumerable<HostedModel> InstancesOf(string key) =>
        _cluster.Hosts.Select(h => h.Instances.GetValueOrDefault(key)).OfType<HostedModel>();

    private int SpillThreshold(HostedModel instance) => instance.Host.Capacity.SpillAt > 0 ? instance.Host.Capacity.SpillAt : instance.Parallel;

    /// <summary>The warm path saw every instance of a model saturated: the policy may load another on a host with room.</summary>
    private void RequestSpill(string key)
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            if (PlacementPolicy.Spill(PolicyView(now, key), key) is { } spill) Execute(spill, now);
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
}
