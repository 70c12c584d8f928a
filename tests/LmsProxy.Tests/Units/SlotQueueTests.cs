using LmsProxy.Sharing;

namespace LmsProxy.Tests.Units;

/// <summary>The slot gate's two halves: the fair order (pure), and the lock-free admission under contention.</summary>
public sealed class SlotQueueTests
{
    /// <summary>Takes every waiter in order; each one taken counts as in flight for its key (as when it holds a slot).</summary>
    private static List<string> Drain(FairOrder order)
    {
        var taken = new List<string>();
        while (order.Next() is { } next)
        {
            next.Owner?.Forwarded();
            taken.Add(next.Flow);
        }
        return taken;
    }

    [Fact]
    public void FairOrder_SharesEquallyWithinAWeight_AndByWeightAcrossThem()
    {
        KeyState big = new("big"), small = new("small");
        var order = new FairOrder();
        for (var i = 0; i < 4; i++) order.Add(new SlotWaiter("big", 4) { Owner = big });
        order.Add(new SlotWaiter("small", 4) { Owner = small });
        order.Add(new SlotWaiter("small", 4) { Owner = small });
        // The small key arrived last yet alternates with the big one.
        Assert.Equal(["small", "big", "small", "big", "big", "big"], Drain(order));

        KeyState batch = new("batch"), interactive = new("interactive");
        for (var i = 0; i < 20; i++) order.Add(new SlotWaiter("batch", FairOrder.WeightOf(LmsProxy.Keys.KeyPriority.Batch)) { Owner = batch });
        for (var i = 0; i < 16; i++) order.Add(new SlotWaiter("interactive", FairOrder.WeightOf(LmsProxy.Keys.KeyPriority.Interactive)) { Owner = interactive });
        var served = Drain(order);
        // Sixteen to one: the interactive key is through within the first 18 turns, and batch still gets turns meanwhile.
        Assert.True(served.LastIndexOf("interactive") < 18, string.Join(",", served));
        Assert.Contains("batch", served.Take(3));
    }

    [Fact]
    public void FairOrder_TwoSlots_ABigBurstAndASmallKeyThatSendsTwoAtATime_TheSmallOneNeverWaitsMoreThanTwoReleases()
    {
        // Two slots in lock-step, a 16-request burst kept topped up, and a small key whose two clients re-send when answered.
        KeyState agent = new("agent"), bob = new("bob");
        var order = new FairOrder();
        var slots = new List<SlotWaiter>();
        for (var i = 0; i < 16; i++) order.Add(new SlotWaiter("agent", 4) { Owner = agent });
        var bobWaitingSince = new Dictionary<SlotWaiter, int>();
        for (var i = 0; i < 2; i++)
        {
            var w = new SlotWaiter("bob", 4) { Owner = bob };
            order.Add(w);
            bobWaitingSince[w] = 0;
        }
        var longest = 0;
        var bobTurns = 0;
        for (var release = 1; release <= 200; release++)
        {
            if (slots.Count == 2)
            {
                var done = slots[0];
                slots.RemoveAt(0);
                done.Owner!.Finished();
                var again = new SlotWaiter(done.Flow, 4) { Owner = done.Owner };
                order.Add(again); // answered: that client sends again at once
                if (done.Flow == "bob") bobWaitingSince[again] = release;
            }
            while (slots.Count < 2 && order.Next() is { } next)
            {
                next.Owner!.Forwarded();
                slots.Add(next);
                if (next.Flow == "bob")
                {
                    bobTurns++;
                    longest = Math.Max(longest, release - bobWaitingSince[next]);
                }
            }
        }

        Assert.InRange(longest, 0, 2);
        Assert.InRange(bobTurns, 90, 110); // half the slots: equal shares
    }

    [Fact]
    public void FairOrder_TheNextSlot_GoesToTheKeyWithTheFewestInFlightForItsWeight_ThenToTheShorterQueue()
    {
        KeyState agent = new("agent"), bob = new("bob");
        var order = new FairOrder();
        for (var i = 0; i < 6; i++) order.Add(new SlotWaiter("agent", 4) { Owner = agent });
        agent.Forwarded();
        agent.Forwarded();
        bob.Forwarded();
        order.Add(new SlotWaiter("bob", 4) { Owner = bob });
        order.Add(new SlotWaiter("bob", 4) { Owner = bob });

        // The agent holds two slots and bob one: bob's goes next, however many the agent has queued.
        Assert.Equal("bob", order.Next()!.Flow);
        bob.Forwarded();
        // Level (two each): the shorter queue, bob's.
        Assert.Equal("bob", order.Next()!.Flow);
        bob.Forwarded();
        // Bob holds three: the agent's turn.
        Assert.Equal("agent", order.Next()!.Flow);
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
