namespace LmsProxy.Scheduling;

/// <summary>One load, unload, swap or refusal, for the status page's timeline.</summary>
/// <param name="Kind">load, unload, swap, refusal, failure, dropped, found.</param>
/// <param name="Reason">For unloads: capacity, refusal, idle, operator; otherwise a short sentence.</param>
internal sealed record CapacityEvent(DateTimeOffset At, string Kind, string Host, string Model, string? Reason = null, double? DurationMs = null);

/// <summary>The last few dozen capacity events, newest last.</summary>
internal sealed class CapacityEvents
{
    private const int Capacity = 60;
    private readonly Queue<CapacityEvent> _events = new();
    private readonly Lock _lock = new();

    /// <summary>After each event (the activity record counts the part of a request's hold a load took).</summary>
    public event Action<CapacityEvent>? Added;

    /// <summary>A load begins (host, model): the requests waiting for the model are "loading" now.</summary>
    public event Action<string, string>? LoadStarted;

    public void Add(CapacityEvent e)
    {
        lock (_lock)
        {
            _events.Enqueue(e);
            if (_events.Count > Capacity) _events.Dequeue();
        }
        Added?.Invoke(e);
    }

    public void LoadStarting(string host, string model) => LoadStarted?.Invoke(host, model);

    public IReadOnlyList<CapacityEvent> Recent()
    {
        lock (_lock) return [.. _events];
    }
}
