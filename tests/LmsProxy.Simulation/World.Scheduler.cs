using LmsProxy.Scheduling;
using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Simulation;

/// <summary>The scheduler's machinery, as the simulation models it: the snapshot, the decisions applied, loads and unloads that end.</summary>
internal sealed partial class World
{
    /// <summary>LM Studio's guardrail estimates 1.15 times the file; the proxy plans with the file plus 10 %: it can be refused.</summary>
    private static long TrueNeed(SimModel model) => (long)(model.Bytes * 1.15);

    private static long Estimate(SimModel model) => (long)(model.Bytes * 1.1);

    private readonly HashSet<long> _wakes = [];

    /// <summary>The hosts healthy in the snapshot the policy decided on (a forward in the same round may mark one down since).</summary>
    private readonly HashSet<string> _healthyInSnapshot = [];

    private void Pump()
    {
        var snapshot = View();
        _healthyInSnapshot.Clear();
        foreach (var host in snapshot.Hosts.Where(h => h.Healthy)) _healthyInSnapshot.Add(host.Name);
        foreach (var decision in PlacementPolicy.Decide(snapshot))
        {
            Trace(decision);
            Apply(decision);
        }
    }

    private PolicySnapshot View()
    {
        var keys = _groups.Values.Select(g => g[0].Client.Model).Distinct().ToList();
        var hosts = _hosts.Values.Select(h => new HostView(h.Name, h.Healthy, h.Busy,
            new HostLimits(h.MaxLoadedModels, h.Spec.IdleUnloadAfter, h.Spec.MaxSwapWait, h.Spec.EvictForeign, 0), h.Budget,
            [.. h.Instances.Select(i => new InstanceView(i.Model, i.State, i.InFlight, i.Parallel, i.LastUsed, i.LoadedAt, Estimate(_models[i.Model]), i.ByProxy,
                _workload.Pinned.Contains(i.Model), i.UnloadWhenDrained, 0, h.LoadTimes.TryGetValue(i.Model, out var t) ? t : null))],
            keys.Where(h.CanServe).ToDictionary(k => k, k => new ModelFit(Estimate(_models[k]),
                h.TooLargeUntil.TryGetValue(k, out var until) && until > Now ? $"{k} was refused alone on {h.Name}" : null,
                h.LoadTimes.TryGetValue(k, out var load) ? load : null)))).ToList();
        var groups = _groups.Select(g => ViewOf(g.Key, g.Value)).ToList();
        return new PolicySnapshot(Now, _time.TimestampFrequency, hosts, groups);
    }

    private static GroupView ViewOf(string id, List<SimRequest> group) =>
        new(id, group[0].Client.Model, group[0].Client.PinHost, group.Min(r => r.Arrived), group.Count, group.Max(r => r.Client.Priority));

    private long Rank(string id, List<SimRequest> group) => PlacementPolicy.Rank(new PolicySnapshot(Now, _time.TimestampFrequency, [], []), ViewOf(id, group));

    /// <summary>
    /// A request joined <paramref name="id"/>: each request waiting in a group that now ranks behind it (a new group of a
    /// higher priority, or one whose priority this request raised) has one more group served before it (invariant 5).
    /// </summary>
    private void CountOvertakes(string id, List<SimRequest> group, long? rankBefore)
    {
        var rank = Rank(id, group);
        if (rankBefore is { } before && rank >= before) return;
        foreach (var (otherId, other) in _groups)
        {
            if (otherId == id) continue;
            var otherRank = Rank(otherId, other);
            if (otherRank <= rank || (rankBefore is { } b && otherRank > b)) continue; // not passed now, or already behind
            foreach (var waiting in other) waiting.Ahead++;
        }
    }

    private void Apply(Decision decision)
    {
        switch (decision)
        {
            case GrantDecision grant:
                Grant(grant);
                break;
            case LoadDecision load:
                StartLoad(load);
                break;
            case DrainDecision drain:
                Find(drain.Host, drain.Model).State = InstanceState.Draining;
                break;
            case ReviveDecision revive:
                Find(revive.Host, revive.Model).State = InstanceState.Ready;
                break;
            case UnloadDecision unload:
                var host = _hosts[unload.Host];
                var instance = Find(unload.Host, unload.Model);
                if (instance.InFlight > 0) throw Violation($"invariant 1: unloading {unload.Model} on {unload.Host} with {instance.InFlight} in flight");
                if (host.Busy) throw Violation($"two operations at once on {host.Name}");
                instance.State = InstanceState.Unloading;
                host.Busy = true;
                At(UnloadTime, new UnloadDone(host, instance, unload.Reason));
                break;
            case WaitDecision { WakeAt: { } at } when _wakes.Add(at):
                AtTimestamp(at, new Wake());
                break;
            case RefuseDecision refuse:
                Refuse(refuse);
                break;
        }
    }

    private SimInstance Find(string host, string model) =>
        _hosts[host].Instances.SingleOrDefault(i => i.Model == model && i.State != InstanceState.Gone) ?? throw Violation($"the policy named {model} on {host}, which it does not hold");

    private void Grant(GrantDecision grant)
    {
        var group = _groups[grant.GroupId];
        var model = group[0].Client.Model;
        var pin = group[0].Client.PinHost;
        var instances = grant.Hosts.Select(h => (Host: _hosts[h], Instance: Find(h, model))).ToList();
        if (instances.Any(i => !_healthyInSnapshot.Contains(i.Host.Name)) && _hosts.Values.Any(h => _healthyInSnapshot.Contains(h.Name) && h.CanServe(model) && (pin is null || h.Name == pin)))
        {
            throw Violation($"failover: {model} granted on an unhealthy host while a healthy host could serve it");
        }
        _groups.Remove(grant.GroupId);
        foreach (var request in group)
        {
            var (host, instance) = instances.MinBy(i => (double)i.Instance.InFlight / i.Instance.Parallel);
            CheckWait(request);
            Start(request, host, instance, "grant");
        }
    }

    private void StartLoad(LoadDecision load)
    {
        var host = _hosts[load.Host];
        var model = _models[load.Model];
        if (host.Busy) throw Violation($"two operations at once on {host.Name}");
        if (host.Instances.Any(i => i.Model == load.Model && i.State != InstanceState.Gone)) throw Violation($"invariant 2: {load.Model} loaded twice on {host.Name}");
        var victims = load.Victims.Select(v => Find(load.Host, v)).ToList();
        if (victims.FirstOrDefault(v => v.InFlight > 0) is { } busy) throw Violation($"invariant 1: {busy.Model} on {host.Name} unloaded with {busy.InFlight} in flight");
        var staying = host.Instances.Where(i => i.State != InstanceState.Gone && !victims.Contains(i)).ToList();
        if (host.Budget > 0 && staying.Sum(i => Estimate(_models[i.Model])) + Estimate(model) > host.Budget)
        {
            throw Violation($"invariant 3: loading {model.Key} on {host.Name} exceeds its known budget of {host.Budget}");
        }
        if (host.MaxLoadedModels > 0 && staying.Count + 1 > host.MaxLoadedModels) throw Violation($"invariant 3: loading {model.Key} on {host.Name} exceeds MaxLoadedModels {host.MaxLoadedModels}");
        foreach (var victim in victims) victim.State = InstanceState.Unloading;
        var instance = new SimInstance(model.Key, model.Bytes, host.Spec.Parallel);
        host.Instances.Add(instance);
        host.Busy = true;
        At(model.LoadTime + UnloadTime * victims.Count, new LoadDone(host, instance, victims));
    }

    private void CompleteLoad(LoadDone done)
    {
        var (host, instance) = (done.Host, done.Instance);
        host.Busy = false;
        foreach (var victim in done.Victims) Remove(host, victim);
        var model = _models[instance.Model];
        var residents = host.Instances.Where(i => i != instance && i.State != InstanceState.Gone).ToList();
        if (!host.Alive || !host.Instances.Contains(instance))
        {
            host.Healthy = host.Alive;
            Remove(host, instance);
            Trace($"load of {model.Key} on {host.Name} failed: host down");
            Disturb();
        }
        else if (_random.NextDouble() < _workload.LoadFailureRate)
        {
            // An unexpected failure ends the load, and the model's waiters get the reason (the scheduler's LoadFailed).
            Remove(host, instance);
            Trace($"load of {model.Key} on {host.Name} failed unexpectedly");
            foreach (var (id, group) in _groups.Where(g => g.Value[0].Client.Model == model.Key && (g.Value[0].Client.PinHost is null || g.Value[0].Client.PinHost == host.Name)).ToList())
            {
                _groups.Remove(id);
                foreach (var request in group) End(request, RequestState.Refused, "load failed");
            }
        }
        else if (residents.Sum(i => TrueNeed(_models[i.Model])) + TrueNeed(model) > host.Spec.TrueMemory)
        {
            Remove(host, instance);
            if (residents.Count == 0) host.TooLargeUntil[model.Key] = Now + Ticks(TimeSpan.FromMinutes(5));
            else
            {
                var ceiling = residents.Sum(i => Estimate(_models[i.Model])) + Estimate(model) - 1;
                host.LearnedCeiling = host.LearnedCeiling == 0 ? ceiling : Math.Min(host.LearnedCeiling, ceiling);
            }
            Trace($"LM Studio on {host.Name} refused {model.Key} (memory); ceiling {host.LearnedCeiling}");
            Disturb();
        }
        else
        {
            instance.State = InstanceState.Ready;
            instance.LoadedAt = instance.LastUsed = Now;
            host.LoadTimes[model.Key] = model.LoadTime;
            Trace($"loaded {model.Key} on {host.Name}");
        }
    }

    private void CompleteUnload(UnloadDone done)
    {
        done.Host.Busy = false;
        if (!done.Host.Alive || _random.NextDouble() < _workload.UnloadFailureRate)
        {
            // A failed unload ends too: the model is still there and serves again.
            if (done.Instance.State == InstanceState.Unloading) done.Instance.State = InstanceState.Ready;
            Trace($"unload of {done.Instance.Model} on {done.Host.Name} failed");
            return;
        }
        Remove(done.Host, done.Instance);
        Trace($"unloaded {done.Instance.Model} on {done.Host.Name} ({done.Reason})");
    }

    private void Remove(SimHost host, SimInstance instance)
    {
        if (instance.InFlight > 0) throw Violation($"invariant 1: {instance.Model} on {host.Name} removed with {instance.InFlight} in flight");
        instance.State = InstanceState.Gone;
        host.Instances.Remove(instance);
    }

    private void Refuse(RefuseDecision refuse)
    {
        var group = _groups[refuse.GroupId];
        var model = group[0].Client.Model;
        var pin = group[0].Client.PinHost;
        var hosts = _hosts.Values.Where(h => h.CanServe(model) && (pin is null || h.Name == pin)).ToList();
        if (refuse.Status is AdmissionStatus.NotFound or AdmissionStatus.ConversationHostDown && hosts.Count > 0)
        {
            throw Violation($"invariant 6: {model} refused as not found, but {hosts[0].Name} has it");
        }
        if (refuse.Status == AdmissionStatus.TooLarge && hosts.FirstOrDefault(h => h.Healthy && CouldMakeRoom(h, _models[model])) is { } roomy)
        {
            throw Violation($"invariant 6: {model} refused as too large, but {roomy.Name} could make room");
        }
        _groups.Remove(refuse.GroupId);
        foreach (var request in group) End(request, RequestState.Refused, refuse.Status.ToString());
    }

    /// <summary>Room could be made: it fits the budget once everything that may go has gone, and LM Studio did not refuse it alone lately.</summary>
    private bool CouldMakeRoom(SimHost host, SimModel model)
    {
        if (host.TooLargeUntil.TryGetValue(model.Key, out var until) && until > Now) return false;
        var staying = host.Instances.Where(i => i.Model != model.Key && i.State != InstanceState.Gone && (_workload.Pinned.Contains(i.Model) || (!i.ByProxy && !host.Spec.EvictForeign))).ToList();
        if (host.Budget > 0 && staying.Sum(i => Estimate(_models[i.Model])) + Estimate(model) > host.Budget) return false;
        return host.MaxLoadedModels == 0 || staying.Count + 1 <= host.MaxLoadedModels;
    }

    private void End(SimRequest request, RequestState state, string reason)
    {
        CheckWait(request);
        request.State = state;
        request.Refusal = reason;
        request.EndedAt = Now;
    }

    /// <summary>Anything outside the policy's control: whoever waits now is not held to the swap bound (invariant 5).</summary>
    private void Disturb()
    {
        foreach (var request in _groups.Values.SelectMany(g => g)) request.Disturbed = true;
    }

    private void ApplyFault(SimFault fault)
    {
        var host = _hosts[fault.Host];
        Trace($"fault: {fault.Kind} {fault.Host} {fault.Model} {fault.Value}");
        Disturb();
        switch (fault.Kind)
        {
            case "down":
                host.Alive = false;
                CutOff(host, host.Instances.ToList());
                host.Instances.RemoveAll(i => i.State == InstanceState.Loading); // its load fails when the call returns
                At(TimeSpan.FromSeconds(2), new Fault(new SimFault(TimeSpan.Zero, "detect", host.Name)));
                break;
            case "detect" when !host.Alive:
                host.Healthy = false; // YARP's health probe noticed
                break;
            case "up":
                host.Alive = true;
                host.Healthy = true;
                // LM Studio restarted with nothing loaded; the proxy's next read of its list finds that out.
                foreach (var instance in host.Instances.ToList()) Remove(host, instance);
                break;
            case "evict" when host.Instances.FirstOrDefault(i => i.Model == fault.Model && i.State is InstanceState.Ready or InstanceState.Draining) is { } evicted:
                evicted.State = InstanceState.Gone; // gone first: a re-sent request cannot land on it again
                host.Instances.Remove(evicted);
                CutOff(host, [evicted]);
                break;
            case "budget":
                host.ConfiguredBudget = fault.Value;
                host.TooLargeUntil.Clear();
                break;
            case "max-loaded":
                host.MaxLoadedModels = (int)fault.Value;
                host.TooLargeUntil.Clear();
                break;
        }
    }

    /// <summary>LM Studio has no drain: the requests on these instances are cut off before they answer, and sent again.</summary>
    private void CutOff(SimHost host, List<SimInstance> instances)
    {
        foreach (var request in _requests.Where(r => r.State == RequestState.Running && instances.Contains(r.Instance!)).ToList())
        {
            EndRunning(request, RequestState.Waiting);
            request.Disturbed = true;
            Trace($"r{request.Id} cut off on {host.Name}: sent again");
            Resend(request);
        }
    }
}
