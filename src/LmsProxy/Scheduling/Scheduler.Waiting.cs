namespace LmsProxy.Scheduling;

/// <summary>
/// What a waiting request is told: its place in its model's queue, what it waits for (room, a load, a swap, a slot)
/// and when it should be served, from the load's progress, the model's load-time history and the load ahead of it
/// on the host. Read by /status, /events and the keep-alives; a request holds a <see cref="WaitTicket"/> to ask.
/// </summary>
internal sealed partial class Scheduler
{
    /// <summary>Given to <see cref="AdmitAsync"/>: while the request waits, <see cref="Describe"/> tells where it is.</summary>
    internal sealed class WaitTicket
    {
        internal volatile object? Waiter;
        internal volatile string? GroupId;
    }

    /// <summary>The wait of one request; null when it is not waiting (any more).</summary>
    public WaitState? Describe(WaitTicket ticket)
    {
        if (ticket.Waiter is not Waiter waiter || ticket.GroupId is not { } id) return null;
        lock (_lock)
        {
            if (!_groups.TryGetValue(id, out var group)) return null;
            var position = 0;
            foreach (var w in group.Waiters)
            {
                if (w.Background) continue;
                position++;
                if (ReferenceEquals(w, waiter)) return GroupWait(group, _time.GetTimestamp()) with { Position = position };
            }
            return null;
        }
    }

    /// <summary>The queues in arrival order, each waiter with its place and age (under the lock).</summary>
    private List<QueueSnapshot> QueueSnapshots(long now) =>
        [.. _groups.Values.Where(g => g.Held > 0).Select(g =>
        {
            var wait = GroupWait(g, now);
            return new QueueSnapshot(g.Key, g.Pin?.Name, wait.WaitingFor, g.Situation, wait.Progress, wait.ProgressSource, wait.EtaMs,
                [.. g.Waiters.Where(w => !w.Background).Select((w, i) => new WaiterSnapshot(i + 1, _time.GetElapsedTime(w.Enqueued, now).TotalMilliseconds, wait.EtaMs))]);
        })];

    /// <summary>What a group waits for and when it should be granted (the whole group is granted together).</summary>
    private WaitState GroupWait(WaitGroup group, long now)
    {
        var instances = (group.Pin is null ? InstancesOf(group.Key) : [.. InstancesOf(group.Key).Where(i => ReferenceEquals(i.Host, group.Pin))]).ToList();
        if (instances.FirstOrDefault(i => i.State == InstanceState.Loading && _tracks.ContainsKey(i)) is { } loading && EstimateOf(loading, now) is { } load)
        {
            return new(group.Key, _tracks[loading].Swap ? "swap" : "load", 0, group.Held, load.Progress, load.Source, load.EtaMs);
        }
        var situation = group.Situation ?? "";
        var waitingFor = situation.Contains("swap", StringComparison.OrdinalIgnoreCase) || situation.Contains("MaxSwapWait", StringComparison.Ordinal) ? "swap"
            : instances.Any(i => i.State == InstanceState.Ready) ? "slot"
            : instances.Any(i => i.State == InstanceState.Loading) ? "load"
            : "room";
        return new(group.Key, waitingFor, 0, group.Held, null, null, EtaWithoutLoad(group, now));
    }

    /// <summary>
    /// No load of the model runs yet: the shortest wait over the hosts that could load it, each being what is left of
    /// the load it runs now, the last load times of the models queued before this one that it could load (a host loads
    /// one model at a time), and this model's last load time there. Null when no host knows this model's load time.
    /// </summary>
    private double? EtaWithoutLoad(WaitGroup group, long now)
    {
        double? best = null;
        foreach (var host in _cluster.Hosts)
        {
            if (host.Removed || (group.Pin is not null && !ReferenceEquals(host, group.Pin)) || host.Catalog.Resolve(group.Key) is null) continue;
            if (LastLoadTime(host, group.Key) is not { } own) continue;
            var ahead = 0.0;
            foreach (var other in host.Instances.Values)
            {
                if (other.State == InstanceState.Loading && EstimateOf(other, now) is { EtaMs: { } left }) ahead = Math.Max(ahead, left);
            }
            foreach (var earlier in _groups.Values)
            {
                if (earlier == group || earlier.Held == 0 || earlier.Oldest >= group.Oldest || (earlier.Pin is not null && !ReferenceEquals(earlier.Pin, host))) continue;
                if (host.Catalog.Resolve(earlier.Key) is null || InstancesOf(earlier.Key).Any(i => i.State is InstanceState.Loading or InstanceState.Ready)) continue;
                if (LastLoadTime(host, earlier.Key) is { } before) ahead += before.TotalMilliseconds;
            }
            var eta = ahead + own.TotalMilliseconds;
            if (best is null || eta < best) best = eta;
        }
        return best;
    }
}

/// <summary>Where one request (or a queue) stands: what it waits for, its place (1: first), and the time left, when known.</summary>
internal sealed record WaitState(string Model, string WaitingFor, int Position, int Queue, double? Progress, string? ProgressSource, double? EtaMs);

internal sealed record QueueSnapshot(string Model, string? Host, string WaitingFor, string? Situation, double? LoadProgress, string? ProgressSource, double? EtaMs,
    IReadOnlyList<WaiterSnapshot> Waiters);

internal sealed record WaiterSnapshot(int Position, double AgeMs, double? EtaMs);
