using LmsProxy.Sharing;

namespace LmsProxy.Tests.Units;

/// <summary>The slot gate's two halves: the fair order (pure), and the lock-free admission under contention.</summary>
public sealed class SlotQueueTests
{
    private static List<string> Drain(FairOrder order) => [.. Enumerable.Range(0, order.Count).Select(_ => order.Next()!.Flow)];

    [Fact]
    public void FairOrder_SharesEquallyWithinAWeight_AndByWeightAcrossThem()
    {
        var order = new FairOrder();
        for (var i = 0; i < 4; i++) order.Add(new SlotWaiter("big", 4));
        order.Add(new SlotWaiter("small", 4));
        order.Add(new SlotWaiter("small", 4));
        // The small flow arrived last yet alternates with the big one.
        Assert.Equal(["big", "small", "big", "small", "big", "big"], Drain(order));

        for (var i = 0; i < 20; i++) order.Add(new SlotWaiter("batch", FairOrder.WeightOf(LmsProxy.Keys.KeyPriority.Batch)));
        for (var i = 0; i < 16; i++) order.Add(new SlotWaiter("interactive", FairOrder.WeightOf(LmsProxy.Keys.KeyPriority.Interactive)));
        var served = Drain(order);
        // Sixteen to one: the interactive flow is through within the first 18 turns, and batch still gets turns meanwhile.
        Assert.True(served.LastIndexOf("interactive") < 18, string.Join(",", served));
        Assert.Contains("batch", served.Take(3));
    }

    [Fact]
    public void FairOrder_AFlowThatWasIdle_CannotBankTurns()
    {
        var order = new FairOrder();
        for (var i = 0; i < 10; i++) order.Add(new SlotWaiter("a", 1));
        for (var i = 0; i < 8; i++) Assert.Equal("a", order.Next()!.Flow);
        // b arrives now: it starts at the present, level with a's next, not at zero ahead of everything a will ever send.
        order.Add(new SlotWaiter("b", 1));
        order.Add(new SlotWaiter("b", 1));
        order.Add(new SlotWaiter("b", 1));
        for (var i = 0; i < 3; i++) order.Add(new SlotWaiter("a", 1));
        Assert.Equal(["b", "a", "b", "a", "b", "a", "a"], Drain(order)[..7]);
    }

    [Fact(Timeout = 30000)]
    public async Task SlotQueue_UnderContention_NeverExceedsItsLimit_AndStrandsNoWaiter()
    {
        var slots = new SlotQueue();
        const int Limit = 3;
        var inside = 0;
        var peak = 0;
        async Task WorkerAsync(int id)
        {
            for (var round = 0; round < 300; round++)
            {
                if (!slots.TryEnter(Limit)) await slots.Enqueue("k" + (id % 4), 1 + id % 3, Limit).Granted.Task.WaitAsync(TimeSpan.FromSeconds(10));
                var now = Interlocked.Increment(ref inside);
                InterlockedMax(ref peak, now);
                if (round % 7 == 0) await Task.Yield();
                Interlocked.Decrement(ref inside);
                slots.Exit(Limit);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(() => WorkerAsync(i))));

        Assert.InRange(peak, 1, Limit);
        Assert.Equal(0, slots.Busy);
        Assert.Equal(0, slots.Queued);
    }

    [Fact]
    public void SlotQueue_AWaiterThatGivesUp_IsTakenOut_AndOneGrantedMeanwhileKeepsItsSlot()
    {
        var slots = new SlotQueue();
        Assert.True(slots.TryEnter(1));
        var first = slots.Enqueue("a", 1, 1);
        var second = slots.Enqueue("a", 1, 1);
        Assert.False(slots.TryEnter(1)); // someone waits: no overtaking on the fast path

        Assert.True(slots.Abandon(first));
        slots.Exit(1);
        Assert.True(second.Granted.Task.IsCompleted);
        Assert.False(slots.Abandon(second)); // granted: it holds the slot
        Assert.Equal(1, slots.Busy);
        slots.Exit(1);
        Assert.True(slots.TryEnter(1));
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current) { }
    }
}
