namespace LmsProxy.Sharing;

/// <summary>
/// One instance's parallel slots as the proxy hands them out: at most the limit forwarded at once, the rest waiting
/// here in <see cref="FairOrder"/> instead of in LM Studio's first-come queue. The warm path (a slot free, nobody
/// waiting) is one compare-and-swap and no lock. The lock is taken only to queue, and by a release while someone waits.
/// Both sides follow "write, then read the other's word" with full fences: a release that finds nobody queued and a
/// waiter that finds every slot taken cannot both miss each other, so no waiter is stranded beside a free slot.
/// </summary>
internal sealed class SlotQueue
{
    private readonly Lock _lock = new();
    private readonly FairOrder _order = new();
    private int _busy;
    private int _queued;

    /// <summary>Slots taken now (requests forwarded and not yet finished).</summary>
    public int Busy => Volatile.Read(ref _busy);

    /// <summary>Requests waiting for a slot.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>A slot at once, when one is free and nobody waits (who waits goes first).</summary>
    public bool TryEnter(int limit)
    {
        return Volatile.Read(ref _queued) == 0 && TakeSlot(limit);
    }

    /// <summary>Queues a waiter; its task completes when it holds a slot (perhaps at once).</summary>
    public SlotWaiter Enqueue(string flow, int weight, int limit, KeyState? owner = null)
    {
        var waiter = new SlotWaiter(flow, weight) { Owner = owner };
        lock (_lock)
        {
            _order.Add(waiter);
            Interlocked.Increment(ref _queued);
            DispatchLocked(limit);
        }
        return waiter;
    }

    /// <summary>Gives a slot back; the next waiter in fair order gets it.</summary>
    public void Exit(int limit)
    {
        Interlocked.Decrement(ref _busy);
        if (Volatile.Read(ref _queued) == 0) return;
        lock (_lock) DispatchLocked(limit);
    }

    /// <summary>Takes a waiter out after its deadline or disconnect; false when it was granted a slot meanwhile (then it holds one).</summary>
    public bool Abandon(SlotWaiter waiter)
    {
        lock (_lock)
        {
            if (!_order.Remove(waiter)) return false;
            Interlocked.Decrement(ref _queued);
            return true;
        }
    }

    /// <summary>Waiting requests by flow (key name), for /status.</summary>
    public List<(string Flow, int Waiting)> Waiting()
    {
        lock (_lock) return [.. _order.Waiting()];
    }

    private void DispatchLocked(int limit)
    {
        while (_order.Count > 0 && TakeSlot(limit))
        {
            var next = _order.Next()!;
            Interlocked.Decrement(ref _queued);
            next.Granted.TrySetResult();
        }
    }

    /// <summary>One more slot busy, unless all <paramref name="limit"/> are (a compare-and-swap, retried only when it races).</summary>
    private bool TakeSlot(int limit)
    {
        while (true)
        {
            var busy = Volatile.Read(ref _busy);
            if (busy >= limit) return false;
            if (Interlocked.CompareExchange(ref _busy, busy + 1, busy) == busy) return true;
        }
    }
}

/// <summary>A request waiting for a slot: its flow (key), weight, and fair-queue stamps.</summary>
internal sealed class SlotWaiter
{
    public SlotWaiter(string flow, int weight)
    {
        Flow = flow;
        Weight = weight;
        Node = new LinkedListNode<SlotWaiter>(this);
    }

    public string Flow { get; }
    public int Weight { get; }

    /// <summary>Its key's state: how many of the key's requests are in flight now (the slot share); null without a key.</summary>
    public KeyState? Owner { get; init; }
    public double Start { get; set; }
    public long Sequence { get; set; }
    internal LinkedListNode<SlotWaiter> Node { get; }
    public TaskCompletionSource Granted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}
