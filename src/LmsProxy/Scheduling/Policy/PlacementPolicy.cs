namespace LmsProxy.Scheduling.Policy;

/// <summary>
/// The scheduler's policy as a pure, deterministic function: a snapshot in, decisions out. No lock, no clock, no I/O,
/// no randomness, so a seeded simulation can run it thousands of times in virtual time (tests/LmsProxy.Tests/Simulation).
/// <list type="bullet">
/// <item>Idle models past IdleUnloadAfter are unloaded (never pinned, never busy, never foreign unless EvictForeign).</item>
/// <item>Groups are served oldest first, an interactive key's group counting as <see cref="PriorityHeadStart"/> older
/// and a batch one's as that much younger: priority decides which model loads next, and a group is passed over only by
/// groups that arrived within two head starts after it, so the starvation bound still holds. A ready instance on a healthy host: grant (spread by free slots; all saturated
/// with several hosts: spill a second instance onto a host with room). Loading somewhere: wait. Otherwise a plan per
/// healthy host that may serve it: fits, fits after unloading idle models (least recently used first), waits for a
/// busy one, or never fits. With no healthy host at all, the unhealthy ones are tried ("panic": a refusal is fast).</item>
/// <item>No thrash: a busy model keeps serving while another waits for its room, until the waiting group's oldest
/// request has waited the swap bound and the busy model has been loaded that long; then it drains and is swapped. While it
/// drains, later groups load nothing on that host: the room is the swap's.</item>
/// </list>
/// Decisions are applied by the scheduler in order; the policy already counts their effect on what it decides next
/// (a host that starts a load is busy, granted requests are in flight).
/// </summary>
internal static partial class PlacementPolicy
{
    /// <summary>A model used this recently counts as busy when room is needed, though nothing is in flight at this instant.</summary>
    public static readonly TimeSpan ActiveWindow = TimeSpan.FromSeconds(1);

    /// <summary>How much older an interactive group counts (and a batch group younger) when groups compete for a host.</summary>
    public static readonly TimeSpan PriorityHeadStart = TimeSpan.FromSeconds(10);

    /// <summary>The order groups are served in: arrival, shifted by priority. Empty groups (only background loads) go last as before.</summary>
    public static long Rank(PolicySnapshot snapshot, GroupView group) =>
        group.Oldest == long.MaxValue ? long.MaxValue : group.Oldest - snapshot.Ticks(PriorityHeadStart) * ((int)group.Priority - (int)Keys.KeyPriority.Normal);

    public static List<Decision> Decide(PolicySnapshot snapshot)
    {
        var decisions = new List<Decision>();
        var hosts = snapshot.Hosts.Select(h => new WorkingHost(h).Init()).ToList();
        foreach (var host in hosts) UnloadIdle(snapshot, host, decisions);

        var draining = new HashSet<(string Host, string Model)>();
        foreach (var group in snapshot.Groups.OrderBy(g => Rank(snapshot, g)))
        {
            Serve(snapshot, hosts, group, decisions, draining);
        }
        foreach (var host in hosts)
        {
            foreach (var instance in host.Instances.Where(i => i.State == InstanceState.Draining).ToList())
            {
                if (instance.View.UnloadWhenDrained)
                {
                    if (instance.View.UnloadRetryAt > snapshot.Now) continue; // the scheduler wakes for the retry
                    if (instance.InFlight == 0 && !host.Busy) StartUnload(host, instance, "operator", decisions);
                }
                else if (!draining.Contains((host.Name, instance.Model)))
                {
                    instance.State = InstanceState.Ready;
                    decisions.Add(new ReviveDecision(host.Name, instance.Model));
                }
            }
        }
        return decisions;
    }

    private static void UnloadIdle(PolicySnapshot snapshot, WorkingHost host, List<Decision> decisions)
    {
        var after = host.View.Limits.IdleUnloadAfter;
        if (host.Busy || after <= TimeSpan.Zero) return;
        var idle = host.Instances.FirstOrDefault(i => i.State == InstanceState.Ready && i.InFlight == 0 && !i.View.Pinned &&
            (i.View.LoadedByProxy || host.View.Limits.EvictForeign) && snapshot.Since(i.View.LastUsed) >= after);
        if (idle is not null) StartUnload(host, idle, "idle", decisions);
    }

    private static void StartUnload(WorkingHost host, WorkingInstance instance, string reason, List<Decision> decisions)
    {
        instance.State = InstanceState.Unloading;
        host.Busy = true;
        decisions.Add(new UnloadDecision(host.Name, instance.Model, reason));
    }

    private static void Serve(PolicySnapshot snapshot, List<WorkingHost> all, GroupView group, List<Decision> decisions, HashSet<(string, string)> draining)
    {
        var hosts = all.Where(h => h.View.Models.ContainsKey(group.Model) && (group.PinHost is null || h.Name == group.PinHost)).ToList();
        if (hosts.Count == 0)
        {
            decisions.Add(new RefuseDecision(group.Id, group.PinHost is null ? AdmissionStatus.NotFound : AdmissionStatus.ConversationHostDown, ""));
            return;
        }
        var candidates = hosts.Where(h => h.View.Healthy).ToList();
        if (candidates.Count == 0) candidates = hosts;

        var ready = candidates.Select(h => h.Find(group.Model)).OfType<WorkingInstance>().Where(i => i.State == InstanceState.Ready).ToList();
        if (ready.Count > 0)
        {
            decisions.Add(new GrantDecision(group.Id, [.. ready.Select(i => i.Host.Name)]));
            for (var n = 0; n < group.Held; n++) ready.MinBy(i => (double)i.InFlight / i.Parallel)!.InFlight++;
            if (group.PinHost is null && all.Count > 1 && ready.TrueForAll(i => i.InFlight >= i.SpillAt)) Spill(snapshot, all, group.Model, decisions);
            return;
        }
        if (candidates.Any(h => h.Find(group.Model)?.State == InstanceState.Loading))
        {
            decisions.Add(new WaitDecision(group.Id, "it is loading"));
            return;
        }
        // A host where the model is draining or unloading still holds it; the others may load it meanwhile.
        var placeable = candidates.Where(h => h.Find(group.Model) is null).ToList();
        if (placeable.Count == 0)
        {
            decisions.Add(new WaitDecision(group.Id, $"waiting for '{group.Model}' to finish unloading on host '{candidates[0].Name}'"));
            return;
        }

        var plans = placeable.Select(h => PlanFor(snapshot, h, group.Model)).ToList();
        var start = plans.Where(p => p.Kind == PlanKind.Fits && !p.Host.Busy).MaxBy(p => p.Free)
            ?? plans.Where(p => p.Kind == PlanKind.EvictIdle && !p.Host.Busy).MinBy(p => p.Cost);
        if (start is not null)
        {
            StartLoad(start.Host, group.Id, group.Model, start.Victims, decisions);
            return;
        }
        if (plans.FirstOrDefault(p => p.Kind is PlanKind.Fits or PlanKind.EvictIdle or PlanKind.Wait) is { } waitForHost)
        {
            decisions.Add(new WaitDecision(group.Id, waitForHost.Host.SwapUnderWay
                ? $"waiting while host '{waitForHost.Host.Name}' makes room for requests that came first"
                : $"waiting for host '{waitForHost.Host.Name}' to finish a load or unload"));
            return;
        }
        if (plans.Where(p => p.Kind == PlanKind.NeedBusy).MinBy(p => p.Cost) is { } swap)
        {
            var busy = string.Join(", ", swap.Victims.Select(v => $"{v.Model} ({v.InFlight} in flight)"));
            var bound = SwapBound.For(swap.Host.View.Limits, swap.Host.View.Models[group.Model].LoadTime, swap.Victims.Select(v => v.View.LoadTime));
            // The bound runs from the oldest request's arrival, and from each victim's load: a model just swapped in
            // serves at least one bound, so two models cannot alternate batch by batch.
            var due = Math.Max(group.Oldest, swap.Victims.Max(v => v.View.LoadedAt)) + snapshot.Ticks(bound);
            if (snapshot.Now >= due)
            {
                swap.Host.SwapUnderWay = true;
                foreach (var victim in swap.Victims)
                {
                    draining.Add((swap.Host.Name, victim.Model));
                    if (victim.State != InstanceState.Ready) continue;
                    victim.State = InstanceState.Draining;
                    decisions.Add(new DrainDecision(swap.Host.Name, victim.Model));
                }
                if (!swap.Host.Busy && swap.Victims.All(v => v.InFlight == 0))
                {
                    // Drained already: the swap's load starts now, not at some later pump (a wake-up nobody would send).
                    StartLoad(swap.Host, group.Id, group.Model, swap.Victims, decisions);
                    return;
                }
                decisions.Add(new WaitDecision(group.Id, $"waiting for {busy} on host '{swap.Host.Name}' to finish, to make room (swap)"));
            }
            else
            {
                decisions.Add(new WaitDecision(group.Id, $"waiting up to {bound.TotalSeconds:0.#} s (Capacity:MaxSwapWait) for room on host '{swap.Host.Name}', where {busy} is busy", due));
            }
            return;
        }
        // A host that still holds it, draining or unloading, may take it back once that ends: not "never" yet.
        if (candidates.FirstOrDefault(h => h.Find(group.Model) is { State: InstanceState.Draining or InstanceState.Unloading }) is { } holder)
        {
            decisions.Add(new WaitDecision(group.Id, $"waiting for '{group.Model}' to finish unloading on host '{holder.Name}'"));
            return;
        }
        decisions.Add(new RefuseDecision(group.Id, AdmissionStatus.TooLarge, string.Join(" ", plans.Select(p => p.Reason))));
    }

    /// <summary>The warm path's ask: with every ready instance of the model saturated, a load on a host with room, or null.</summary>
    public static LoadDecision? Spill(PolicySnapshot snapshot, string model)
    {
        var hosts = snapshot.Hosts.Select(h => new WorkingHost(h).Init()).ToList();
        var ready = hosts.Select(h => h.Find(model)).OfType<WorkingInstance>().ToList();
        if (ready.Count == 0 || !ready.TrueForAll(i => i.State == InstanceState.Ready && i.InFlight >= i.SpillAt)) return null;
        var decisions = new List<Decision>();
        Spill(snapshot, hosts, model, decisions);
        return decisions.OfType<LoadDecision>().FirstOrDefault();
    }

    /// <summary>
    /// Every ready instance is saturated: load a second one on a healthy idle host with room, unloading nothing. A host
    /// that drains a model is making room for someone (a swap, an operator): its free memory is not spare.
    /// </summary>
    private static void Spill(PolicySnapshot snapshot, List<WorkingHost> all, string model, List<Decision> decisions)
    {
        if (all.Any(h => h.Find(model) is { State: not InstanceState.Ready })) return;
        var target = all.Where(h => h.View.Healthy && !h.Busy && h.Find(model) is null && h.View.Models.ContainsKey(model)
                && !h.Instances.Exists(i => i.State == InstanceState.Draining))
            .Select(h => PlanFor(snapshot, h, model)).Where(p => p.Kind == PlanKind.Fits).MaxBy(p => p.Free);
        if (target is not null) StartLoad(target.Host, null, model, [], decisions);
    }

    private static void StartLoad(WorkingHost host, string? groupId, string model, IReadOnlyList<WorkingInstance> victims, List<Decision> decisions)
    {
        foreach (var victim in victims) victim.State = InstanceState.Unloading;
        host.Busy = true;
        host.Instances.Add(new WorkingInstance(host, model, host.View.Models.TryGetValue(model, out var fit) ? fit.NeedBytes : 0));
        decisions.Add(new LoadDecision(groupId, host.Name, model, [.. victims.Select(v => v.Model)]));
    }

    private enum PlanKind
    {
        Fits,
        EvictIdle,
        NeedBusy,
        Wait,
        Never,
    }

    private sealed record Plan(WorkingHost Host, PlanKind Kind, IReadOnlyList<WorkingInstance> Victims, long Free = 0, long Cost = 0, string? Reason = null);

    /// <summary>What loading <paramref name="model"/> on <paramref name="host"/> would take.</summary>
    private static Plan PlanFor(PolicySnapshot snapshot, WorkingHost host, string model)
    {
        var fit = host.View.Models[model];
        if (fit.NeverReason is { } never) return new(host, PlanKind.Never, [], Reason: never);
        // The room an earlier group's swap is making is that group's: a later one that took it (its victims drained with
        // nothing in flight look idle) would load a model only for the swap to unload it again, unserved.
        if (host.SwapUnderWay) return new(host, PlanKind.Wait, [], Reason: $"'{model}' waits while host '{host.Name}' makes room for requests that came first.");
        var budget = host.View.BudgetBytes;
        var need = fit.NeedBytes;
        if (budget > 0 && need > budget)
        {
            return new(host, PlanKind.Never, [], Reason: $"'{model}' needs about {Gb(need)} and host '{host.Name}' has {Gb(budget)} in all (Capacity:MemoryBudgetBytes, or what LM Studio's refusals showed).");
        }
        var limits = host.View.Limits;
        var residents = host.Instances.Where(i => i.State != InstanceState.Gone && !string.Equals(i.Model, model, StringComparison.OrdinalIgnoreCase)).ToList();
        var used = residents.Sum(i => i.EstimatedBytes);
        var count = residents.Count;
        bool Fits() => (budget == 0 || used + need <= budget) && (limits.MaxLoadedModels == 0 || count + 1 <= limits.MaxLoadedModels);
        if (Fits()) return new(host, PlanKind.Fits, [], Free: budget == 0 ? long.MaxValue - used : budget - used);

        // What can never go decides "never": pinned models, and models loaded outside the proxy (unless EvictForeign).
        bool Stays(WorkingInstance i) => i.View.Pinned || (!i.View.LoadedByProxy && !limits.EvictForeign);
        var staying = residents.Where(Stays).ToList();
        if ((budget > 0 && staying.Sum(i => i.EstimatedBytes) + need > budget) || (limits.MaxLoadedModels > 0 && staying.Count + 1 > limits.MaxLoadedModels))
        {
            var pinned = staying.Where(i => i.View.Pinned).Select(i => i.Model).ToList();
            var foreign = staying.Where(i => !i.View.Pinned).Select(i => i.Model).ToList();
            return new(host, PlanKind.Never, [], Reason: $"Host '{host.Name}' cannot make room for '{model}'" +
                (pinned.Count > 0 ? $": pinned {string.Join(", ", pinned)}" : "") +
                (foreign.Count > 0 ? $"; loaded outside the proxy {string.Join(", ", foreign)} (Capacity:EvictForeign is false)" : "") + ".");
        }

        // Draining ones first (a swap under way keeps its victim: choosing another each round would revive one and drain
        // the next, and the waiter would wait for both), then idle (least recently used first), then busy ones. A model
        // used a moment ago counts as busy: between two requests of a client that sends back to back it has nothing in
        // flight, and unloading it then would thrash.
        bool Busy(WorkingInstance i) => i.InFlight > 0 || (i.State == InstanceState.Ready && snapshot.Since(i.View.LastUsed) < ActiveWindow);
        var evictable = residents
            .Where(i => i.State is InstanceState.Ready or InstanceState.Draining && !Stays(i))
            .OrderBy(i => i.State == InstanceState.Draining ? 0 : 1).ThenBy(i => Busy(i) ? 1 : 0).ThenBy(i => i.View.LastUsed);
        var victims = new List<WorkingInstance>();
        foreach (var victim in evictable)
        {
            victims.Add(victim);
            used -= victim.EstimatedBytes;
            count--;
            if (!Fits()) continue;
            return new(host, victims.Any(Busy) ? PlanKind.NeedBusy : PlanKind.EvictIdle, victims, Cost: victims.Sum(v => v.EstimatedBytes));
        }
        // Room comes once loads and unloads under way on the host end.
        return new(host, PlanKind.Wait, [], Reason: $"'{model}' waits for the load or unload under way on host '{host.Name}'.");
    }

    private static string Gb(long bytes) => $"{bytes / 1e9:0.0} GB";
}
