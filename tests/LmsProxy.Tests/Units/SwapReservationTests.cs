using LmsProxy.Scheduling;
using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Tests.Units;

/// <summary>
/// The room a swap makes belongs to the group it was started for. Found by the simulation (seed 42504 of 100,000): a
/// later group took a drained victim that had nothing in flight as idle, loaded its model, and the swap unloaded that
/// model again before it served anyone, twice in a row.
/// </summary>
public sealed class SwapReservationTests
{
    private const long Frequency = 1000;
    private const long Now = 1_000_000;
    private const long Gb = 1_000_000_000;

    private static InstanceView Instance(string model, InstanceState state, int inFlight, long lastUsed) =>
        new(model, state, inFlight, 4, lastUsed, LoadedAt: 0, 4 * Gb, LoadedByProxy: true, Pinned: false, UnloadWhenDrained: false, 0, TimeSpan.FromSeconds(2));

    /// <summary>10 GB: a busy model and an idle one of 4 GB each; "big" (9 GB) needs both gone, "small" (5 GB) only the idle one.</summary>
    private static PolicySnapshot Snapshot(InstanceState busyState, InstanceState idleState, params GroupView[] groups)
    {
        var host = new HostView("h", Healthy: true, Busy: false, new HostLimits(0, TimeSpan.Zero, null, false, 0), 10 * Gb,
            [Instance("busy", busyState, 3, Now), Instance("idle", idleState, 0, Now - 5_000)],
            new Dictionary<string, ModelFit> { ["big"] = new(9 * Gb, null, TimeSpan.FromSeconds(2)), ["small"] = new(5 * Gb, null, TimeSpan.FromSeconds(2)) });
        return new PolicySnapshot(Now, Frequency, [host], groups);
    }

    private static readonly GroupView Big = new("g-big", "big", null, Oldest: Now - 60_000, Held: 1);
    private static readonly GroupView Small = new("g-small", "small", null, Oldest: Now - 1_000, Held: 1);

    [Fact]
    public void AnOlderGroupsSwap_DrainsBoth_AndALaterGroupDoesNotTakeTheRoom()
    {
        var decisions = PlacementPolicy.Decide(Snapshot(InstanceState.Ready, InstanceState.Ready, Big, Small));

        Assert.Equal(["busy", "idle"], decisions.OfType<DrainDecision>().Select(d => d.Model).Order());
        Assert.Empty(decisions.OfType<LoadDecision>());
        Assert.Contains(decisions.OfType<WaitDecision>(), w => w.GroupId == Small.Id && w.Situation.Contains("makes room for requests that came first", StringComparison.Ordinal));
    }

    [Fact]
    public void WhileTheSwapDrains_TheLaterGroupStillWaits_AndTheSwapLoadsOnceTheBusyOneIsDone()
    {
        var draining = PlacementPolicy.Decide(Snapshot(InstanceState.Draining, InstanceState.Draining, Big, Small));
        Assert.Empty(draining.OfType<LoadDecision>());

        // The busy model's requests ended and it unloaded: the room is the older group's.
        var host = new HostView("h", true, false, new HostLimits(0, TimeSpan.Zero, null, false, 0), 10 * Gb,
            [Instance("idle", InstanceState.Draining, 0, Now - 5_000)],
            new Dictionary<string, ModelFit> { ["big"] = new(9 * Gb, null, null), ["small"] = new(5 * Gb, null, null) });
        var load = PlacementPolicy.Decide(new PolicySnapshot(Now, Frequency, [host], [Big, Small])).OfType<LoadDecision>().Single();
        Assert.Equal("big", load.Model);
    }

    [Fact]
    public void TheWarmPathSpillsOntoAHostWithRoom_ButNotOntoOneThatDrainsAModel()
    {
        static HostView Second(InstanceState other) => new("h2", true, false, new HostLimits(0, TimeSpan.Zero, null, false, 0), 10 * Gb,
            [Instance("other", other, 0, Now - 5_000)], new Dictionary<string, ModelFit> { ["busy"] = new(4 * Gb, null, null) });
        var saturated = new HostView("h", true, false, new HostLimits(0, TimeSpan.Zero, null, false, 0), 10 * Gb,
            [Instance("busy", InstanceState.Ready, 4, Now)], new Dictionary<string, ModelFit> { ["busy"] = new(4 * Gb, null, null) });

        Assert.Equal("h2", PlacementPolicy.Spill(new PolicySnapshot(Now, Frequency, [saturated, Second(InstanceState.Ready)], []), "busy")?.Host);
        Assert.Null(PlacementPolicy.Spill(new PolicySnapshot(Now, Frequency, [saturated, Second(InstanceState.Draining)], []), "busy"));
    }

    [Fact]
    public void WithNoSwapUnderWay_ALaterGroupMayStillUseIdleRoom()
    {
        // Only "small" waits: the idle model goes and "small" loads beside the busy one, as before.
        var load = PlacementPolicy.Decide(Snapshot(InstanceState.Ready, InstanceState.Ready, Small)).OfType<LoadDecision>().Single();
        Assert.Equal("small", load.Model);
    }
}
