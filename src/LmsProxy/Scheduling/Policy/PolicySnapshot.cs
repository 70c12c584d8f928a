namespace LmsProxy.Scheduling.Policy;

/// <summary>
/// Everything the placement policy may look at, copied out of the scheduler's state under its lock: no clock, no I/O,
/// no live objects. Times are TimeProvider timestamps (<see cref="Frequency"/> per second). The simulation builds
/// these from a fake world instead.
/// </summary>
internal sealed record PolicySnapshot(long Now, long Frequency, IReadOnlyList<HostView> Hosts, IReadOnlyList<GroupView> Groups)
{
    public long Ticks(TimeSpan span) => (long)(span.TotalSeconds * Frequency);

    public TimeSpan Since(long timestamp) => TimeSpan.FromSeconds((Now - timestamp) / (double)Frequency);
}

/// <summary>How much one host may hold and when the proxy unloads (a host's Capacity settings).</summary>
/// <param name="MaxSwapWait">The swap bound; null: derived from load times (see <see cref="SwapBound"/>).</param>
internal sealed record HostLimits(int MaxLoadedModels, TimeSpan IdleUnloadAfter, TimeSpan? MaxSwapWait, bool EvictForeign, int SpillAt);

/// <param name="Busy">A load or unload runs on it (one at a time per host: LM Studio duplicates or evicts when they overlap).</param>
/// <param name="BudgetBytes">Configured or learned memory budget; 0: unknown.</param>
/// <param name="Models">The models of the waiting groups that this host has downloaded and may serve, with what loading them takes.</param>
internal sealed record HostView(string Name, bool Healthy, bool Busy, HostLimits Limits, long BudgetBytes, IReadOnlyList<InstanceView> Instances,
    IReadOnlyDictionary<string, ModelFit> Models);

/// <param name="LoadedAt">Timestamp its load ended (0 when it was found loaded): a model stays at least one swap bound.</param>
/// <param name="LoadTime">How long its last load on this host took, when measured (a swap's cost includes loading it back).</param>
internal sealed record InstanceView(string Model, InstanceState State, int InFlight, int Parallel, long LastUsed, long LoadedAt, long EstimatedBytes,
    bool LoadedByProxy, bool Pinned, bool UnloadWhenDrained, long UnloadRetryAt, TimeSpan? LoadTime);

/// <param name="NeedBytes">Estimated memory once loaded.</param>
/// <param name="NeverReason">Set when LM Studio refused it even alone, lately.</param>
/// <param name="LoadTime">How long its last load on this host took, when one was measured.</param>
internal sealed record ModelFit(long NeedBytes, string? NeverReason, TimeSpan? LoadTime);

/// <param name="PinHost">The host a conversation is pinned to, or null.</param>
/// <param name="Oldest">Timestamp of the oldest waiter.</param>
/// <param name="Held">Requests waiting (a background load waits too, uncounted).</param>
/// <param name="Priority">The highest priority among its waiters' keys.</param>
internal sealed record GroupView(string Id, string Model, string? PinHost, long Oldest, int Held, Keys.KeyPriority Priority = Keys.KeyPriority.Normal);

/// <summary>What the policy decided: plain records, so a failing simulation seed prints a readable story.</summary>
internal abstract record Decision;

/// <summary>Release the group onto the ready instances of its model on these hosts.</summary>
internal sealed record GrantDecision(string GroupId, IReadOnlyList<string> Hosts) : Decision;

/// <summary>Load the model on the host, after unloading the victims (idle ones, or drained ones for a swap). Group null: a spill-over.</summary>
internal sealed record LoadDecision(string? GroupId, string Host, string Model, IReadOnlyList<string> Victims) : Decision;

/// <summary>A swap: the busy model takes no new requests and finishes what it has.</summary>
internal sealed record DrainDecision(string Host, string Model) : Decision;

/// <summary>Nobody waits for a draining model's room any more: it takes requests again.</summary>
internal sealed record ReviveDecision(string Host, string Model) : Decision;

/// <summary>Unload an instance with nothing in flight (idle for too long, or drained for an operator).</summary>
internal sealed record UnloadDecision(string Host, string Model, string Reason) : Decision;

/// <summary>The group waits; the scheduler pumps again at <paramref name="WakeAt"/> (a timestamp) if given.</summary>
internal sealed record WaitDecision(string GroupId, string Situation, long? WakeAt = null) : Decision;

/// <summary>The group can be served nowhere: no host has the model (<see cref="AdmissionStatus.NotFound"/>) or it can never fit.</summary>
internal sealed record RefuseDecision(string GroupId, AdmissionStatus Status, string Reason) : Decision;

/// <summary>The swap bound: how long a waiting model lets a busy one serve before it is swapped out, and how long a model stays once loaded.</summary>
internal static class SwapBound
{
    public static readonly TimeSpan Floor = TimeSpan.FromSeconds(2);
    public static readonly TimeSpan Ceiling = TimeSpan.FromSeconds(30);

    /// <summary>What a swap's load costs when no load of either model was measured yet.</summary>
    public static readonly TimeSpan UnmeasuredLoad = TimeSpan.FromSeconds(5);

    /// <summary>The bound in swap costs: a swap costs one load now (the waiting model's) and one back later (the victim's).</summary>
    private const double SwapCostMultiple = 1.15;

    /// <summary>
    /// auto: 1.15 × (the load time of the waiting model plus the victims' longest), between the floor and the ceiling.
    /// With 1.5 s loads that is 3.45 s. A model serves for B of every B + load + drain, and the longest wait is about
    /// B + two loads + two drains. Measured with the swap benchmark (README, "Swap"): 1.0 served 5.0× FIFO's requests per
    /// second, at the goal's line; 1.15 serves 5.4–5.5× with the longest wait 7.4–7.5 s; 1.25 served 5.3–5.4× but once
    /// waited 7.9 s, at the 8 s goal's line.
    /// </summary>
    public static TimeSpan For(HostLimits limits, TimeSpan? waitingLoad, IEnumerable<TimeSpan?> victimLoads)
    {
        if (limits.MaxSwapWait is { } fixedBound) return fixedBound;
        // A model never loaded here is taken to load like the one it displaces (same host, same disk), else 5 s.
        var victim = victimLoads.Max() ?? waitingLoad ?? UnmeasuredLoad;
        var bound = ((waitingLoad ?? victim) + victim) * SwapCostMultiple;
        return bound < Floor ? Floor : bound > Ceiling ? Ceiling : bound;
    }
}
