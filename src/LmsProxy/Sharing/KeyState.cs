namespace LmsProxy.Sharing;

/// <summary>
/// What the proxy keeps per key while it runs: requests in flight and queued (for /status and /metrics), the last
/// minute's request times (RequestsPerMinute), and the MaxConcurrent gate. The daily totals live in UsageTotals.
/// </summary>
internal sealed class KeyState(string name)
{
    private readonly Queue<long> _lastMinute = new();
    private int _inFlight;
    private int _queued;
    private (int Limit, SemaphoreSlim Gate)? _concurrency;

    public string Name { get; } = name;

    /// <summary>Its requests forwarded to LM Studio and not yet finished.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Its requests waiting in the proxy: for a slot or under MaxConcurrent.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>Requests accepted in the last minute (RequestsPerMinute counts these).</summary>
    public int LastMinute(long now, long frequency)
    {
        lock (_lastMinute)
        {
            Trim(now, frequency);
            return _lastMinute.Count;
        }
    }

    internal void Forwarded() => Interlocked.Increment(ref _inFlight);
    internal void Finished() => Interlocked.Decrement(ref _inFlight);
    internal void Waiting() => Interlocked.Increment(ref _queued);
    internal void DoneWaiting() => Interlocked.Decrement(ref _queued);

    /// <summary>Counts a request against the limit, or says how long until the oldest of the minute's requests ages out.</summary>
    public bool TryTake(int perMinute, long now, long frequency, out TimeSpan retryAfter)
    {
        lock (_lastMinute)
        {
            Trim(now, frequency);
            if (_lastMinute.Count >= perMinute)
            {
                retryAfter = TimeSpan.FromSeconds((_lastMinute.Peek() + 60 * frequency - now) / (double)frequency);
                return false;
            }
            _lastMinute.Enqueue(now);
            retryAfter = TimeSpan.Zero;
            return true;
        }
    }

    /// <summary>The gate for <paramref name="limit"/>; a settings change to the limit gets a fresh gate (requests in the old one finish there).</summary>
    public SemaphoreSlim ConcurrencyGate(int limit)
    {
        var current = _concurrency;
        if (current is { } c && c.Limit == limit) return c.Gate;
        lock (_lastMinute)
        {
            if (_concurrency is { } again && again.Limit == limit) return again.Gate;
            var gate = new SemaphoreSlim(limit, limit);
            _concurrency = (limit, gate);
            return gate;
        }
    }

    private void Trim(long now, long frequency)
    {
        while (_lastMinute.Count > 0 && now - _lastMinute.Peek() >= 60 * frequency) _lastMinute.Dequeue();
    }
}
