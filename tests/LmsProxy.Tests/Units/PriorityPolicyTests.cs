using LmsProxy.Keys;
using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Tests.Units;

/// <summary>Priority weighs which waiting model loads next, within a bounded head start (the policy is pure: snapshots in, decisions out).</summary>
public sealed class PriorityPolicyTests
{
    private const long Frequency = 1000;

    private static PolicySnapshot OneFreeHost(long now, params GroupView[] groups)
    {
        var host = new HostView("h", Healthy: true, Busy: false, new HostLimits(1, TimeSpan.Zero, null, false, 0), 0, [],
            new Dictionary<string, ModelFit> { ["a"] = new(1_000_000_000, null, null), ["b"] = new(1_000_000_000, null, null) });
        return new PolicySnapshot(now, Frequency, [host], groups);
    }

    private static string LoadedFirst(PolicySnapshot snapshot) => PlacementPolicy.Decide(snapshot).OfType<LoadDecision>().Single().Model;

    [Fact]
    public void AnInteractiveGroup_LoadsBeforeANormalOneThatArrivedSecondsEarlier()
    {
        var snapshot = OneFreeHost(100_000, new GroupView("a", "a", null, Oldest: 90_000, Held: 3), new GroupView("b", "b", null, Oldest: 95_000, Held: 1, KeyPriority.Interactive));

        Assert.Equal("b", LoadedFirst(snapshot));
    }

    [Fact]
    public void ANormalGroup_LoadsBeforeABatchOneThatArrivedEarlier_ButEqualPrioritiesKeepArrivalOrder()
    {
        Assert.Equal("b", LoadedFirst(OneFreeHost(100_000, new GroupView("a", "a", null, 90_000, 1, KeyPriority.Batch), new GroupView("b", "b", null, 95_000, 1))));
        Assert.Equal("a", LoadedFirst(OneFreeHost(100_000, new GroupView("a", "a", null, 90_000, 1, KeyPriority.Batch), new GroupView("b", "b", null, 95_000, 1, KeyPriority.Batch))));
    }

    [Fact]
    public void TheHeadStartIsBounded_AGroupWaitingLongerThanItGoesFirstWhateverThePriority()
    {
        var headStart = (long)(PlacementPolicy.PriorityHeadStart.TotalSeconds * Frequency);
        // Batch against interactive: two head starts apart; one tick more and the batch group has waited long enough.
        var snapshot = OneFreeHost(200_000, new GroupView("a", "a", null, 100_000, 1, KeyPriority.Batch), new GroupView("b", "b", null, 100_000 + 2 * headStart + 1, 1, KeyPriority.Interactive));

        Assert.Equal("a", LoadedFirst(snapshot));
    }
}
