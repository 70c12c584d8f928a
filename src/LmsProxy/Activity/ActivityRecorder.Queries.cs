using System.Threading.Channels;

namespace LmsProxy.Activity;

/// <summary>What the endpoints read: the list (in flight, recent in memory, older from the store) and the change feed.</summary>
internal sealed partial class ActivityRecorder
{
    private volatile Channel<ActivityRecord>[] _subscribers = [];
    private readonly Lock _subscribersLock = new();

    /// <summary>A filter on the list; null fields match everything.</summary>
    public sealed record Query(int Limit, string? Model, string? Key, int? Status, DateTimeOffset? Since)
    {
        public bool Matches(ActivityRecord r) =>
            (Model is null || string.Equals(r.Model, Model, StringComparison.OrdinalIgnoreCase) || string.Equals(r.ResolvedModel, Model, StringComparison.OrdinalIgnoreCase))
            && (Key is null || string.Equals(r.Key, Key, StringComparison.Ordinal))
            && (Status is null || r.Status == Status)
            && (Since is null || r.StartedAt >= Since.Value.UtcDateTime);
    }

    /// <summary>Newest first: in flight, then the finished ones in memory, then older ones from the store.</summary>
    public List<ActivityRecord> List(Query query)
    {
        var result = new List<ActivityRecord>(Math.Min(query.Limit, 1000));
        // A status filter is about what the client got: in-flight requests have none yet.
        if (query.Status is null) result.AddRange(_live.Values.Where(query.Matches).OrderByDescending(r => r.Id).Take(query.Limit));
        var oldest = long.MaxValue;
        lock (_recentLock)
        {
            for (var i = 1; i <= _recent.Length && result.Count < query.Limit; i++)
            {
                var r = _recent[(_recentNext - i + _recent.Length) % _recent.Length];
                if (r is null) break;
                oldest = r.Id;
                if (query.Matches(r)) result.Add(r);
            }
        }
        if (result.Count < query.Limit) result.AddRange(_store.ReadActivity(query, oldest, query.Limit - result.Count));
        return result;
    }

    /// <summary>One record with its captured bodies, in flight or finished.</summary>
    public ActivityRecord? Find(long id)
    {
        if (_live.TryGetValue(id, out var live)) return live;
        lock (_recentLock)
        {
            foreach (var r in _recent)
            {
                if (r?.Id == id) return r;
            }
        }
        return _store.ReadActivity(id);
    }

    /// <summary>Every change from now on (begun, state, finished), as copies; the oldest are dropped for a slow reader.</summary>
    public ChannelReader<ActivityRecord> Subscribe(CancellationToken until)
    {
        var channel = Channel.CreateBounded<ActivityRecord>(new BoundedChannelOptions(1000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        lock (_subscribersLock) _subscribers = [.. _subscribers, channel];
        until.Register(() =>
        {
            lock (_subscribersLock) _subscribers = [.. _subscribers.Where(c => c != channel)];
            channel.Writer.TryComplete();
        });
        return channel.Reader;
    }

    private void Changed(ActivityRecord record)
    {
        var subscribers = _subscribers;
        if (subscribers.Length == 0) return;
        var copy = record.Copy();
        foreach (var subscriber in subscribers) subscriber.Writer.TryWrite(copy);
    }
}
