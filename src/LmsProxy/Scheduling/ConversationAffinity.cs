using System.Collections.Concurrent;
using LmsProxy.Hosts;

namespace LmsProxy.Scheduling;

/// <summary>
/// Which host made which response: a stateful conversation (/v1/responses, LM Studio's /api/v1/chat) continues only
/// where its state lives. Recorded while the response streams through, before the client can ask for the next turn.
/// Bounded: the oldest ids are forgotten first.
/// </summary>
public sealed class ConversationAffinity
{
    public const int MaxRemembered = 100_000;

    private readonly ConcurrentDictionary<string, LmStudioHost> _hosts = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _order = new();

    public int Count => _hosts.Count;

    public void Record(string responseId, LmStudioHost host)
    {
        if (!_hosts.TryAdd(responseId, host)) return;
        _order.Enqueue(responseId);
        while (_order.Count > MaxRemembered && _order.TryDequeue(out var oldest)) _hosts.TryRemove(oldest, out _);
    }

    public LmStudioHost? HostOf(string responseId) => _hosts.TryGetValue(responseId, out var host) ? host : null;
}
