namespace LmsProxy.Sharing;

/// <summary>
/// A fair queue over flows (one flow per key). First, slots are shared by weight: the next slot goes to the flow whose
/// key has the fewest requests in flight for its weight, so two keys of one class hold the slots half and half, and a
/// key that sends two at a time waits for its own slot rather than behind a burst; level on that, the flow with fewer
/// waiting goes first (a burst does not hold a light key back once both hold their share). Then start-time fair
/// queuing: each waiter is stamped on arrival with a start tag max(virtual time, the flow's last finish) and a
/// finish tag start + 1/weight; the smallest start tag goes next and the virtual time moves to it, so a burst takes its
/// share of turns and no more, and a flow that just arrived starts at the present (it cannot bank idle time). Weights:
/// 16 against 1 gives sixteen to one. Not thread-safe: its SlotQueue's lock guards it.
/// </summary>
internal sealed class FairOrder
{
    private readonly Dictionary<string, Flow> _flows = new(StringComparer.Ordinal);
    private double _virtualTime;
    private long _sequence;

    public int Count { get; private set; }

    /// <summary>Weight by priority: what share of slots a key gets against a key of another class when both wait.</summary>
    public static int WeightOf(Keys.KeyPriority priority) => priority switch
    {
        Keys.KeyPriority.Interactive => 16,
        Keys.KeyPriority.Normal => 4,
        _ => 1,
    };

    public void Add(SlotWaiter waiter)
    {
        if (!_flows.TryGetValue(waiter.Flow, out var flow)) _flows[waiter.Flow] = flow = new Flow();
        waiter.Start = Math.Max(_virtualTime, flow.LastFinish);
        waiter.Sequence = _sequence++;
        flow.LastFinish = waiter.Start + 1.0 / waiter.Weight;
        flow.Waiters.AddLast(waiter.Node);
        Count++;
    }

    /// <summary>The next waiter, or null when none waits.</summary>
    public SlotWaiter? Next()
    {
        SlotWaiter? best = null;
        var bestShare = double.MaxValue;
        foreach (var flow in _flows.Values)
        {
            if (flow.Waiters.First?.Value is not { } head) continue;
            var share = (head.Owner?.InFlight ?? 0) / (double)head.Weight;
            if (best is null || share < bestShare || (share == bestShare && Before(flow, head, _flows[best.Flow], best)))
            {
                best = head;
                bestShare = share;
            }
        }
        if (best is null) return null;
        var owner = _flows[best.Flow];
        owner.Waiters.RemoveFirst();
        Count--;
        _virtualTime = Math.Max(_virtualTime, best.Start);
        Forget();
        return best;
    }

    private static bool Before(Flow flow, SlotWaiter head, Flow other, SlotWaiter otherHead) =>
        flow.Waiters.Count != other.Waiters.Count ? flow.Waiters.Count < other.Waiters.Count
        : head.Start != otherHead.Start ? head.Start < otherHead.Start
        : head.Sequence < otherHead.Sequence;

    /// <summary>Takes out a waiter that gave up; false when it is not queued (it was granted meanwhile).</summary>
    public bool Remove(SlotWaiter waiter)
    {
        if (waiter.Node.List is null || !_flows.TryGetValue(waiter.Flow, out var flow) || waiter.Node.List != flow.Waiters) return false;
        flow.Waiters.Remove(waiter.Node);
        Count--;
        Forget();
        return true;
    }

    /// <summary>The waiters per flow now (for /status).</summary>
    public IEnumerable<(string Flow, int Waiting)> Waiting()
    {
        foreach (var (name, flow) in _flows)
        {
            if (flow.Waiters.Count > 0) yield return (name, flow.Waiters.Count);
        }
    }

    // Idle flows whose last finish the virtual time has passed hold nothing worth keeping.
    private void Forget()
    {
        if (_flows.Count < 8) return;
        foreach (var (name, flow) in _flows.ToList())
        {
            if (flow.Waiters.Count == 0 && flow.LastFinish <= _virtualTime) _flows.Remove(name);
        }
    }

    private sealed class Flow
    {
        public LinkedList<SlotWaiter> Waiters { get; } = new();
        public double LastFinish;
    }
}
