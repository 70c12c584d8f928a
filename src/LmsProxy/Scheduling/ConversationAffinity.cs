using System.Collections.Concurrent;
using LmsProxy.Hosts;
using LmsProxy.Storage;

namespace LmsProxy.Scheduling;

/// <summary>
/// Which host made which response: a stateful conversation (/v1/responses, LM Studio's /api/v1/chat) continues only
/// where its state lives. Recorded while the response streams through, before the client can ask for the next turn.
/// Bounded: the oldest ids are forgotten first. Kept in the state store, so that a chain continues after a restart
/// (ids of hosts no longer configured are dropped).
/// </summary>
internal sealed class ConversationAffinity
{
    public const int MaxRemembered = 100_000;

    private readonly ConcurrentDictionary<string, LmStudioHost> _hosts = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _order = new();
    private readonly IStateStore? _state;

    public ConversationAffinity() { }

    public ConversationAffinity(HostCluster cluster, IStateStore state)
    {
        _state = state;
        var byName = cluster.Hosts.ToDictionary(h => h.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var (id, name) in state.Load(StateKinds.Affinity))
        {
            if (byName.TryGetValue(name, out var host) && _hosts.TryAdd(id, host)) _order.Enqueue(id);
        }
    }

    public int Count => _hosts.Count;

    public void Record(string responseId, LmStudioHost host)
    {
        if (!_hosts.TryAdd(responseId, host)) return;
        _order.Enqueue(responseId);
        _state?.Save(StateKinds.Affinity, responseId, host.Name);
        while (_order.Count > MaxRemembered && _order.TryDequeue(out var oldest))
        {
            _hosts.TryRemove(oldest, out _);
            _state?.Save(StateKinds.Affinity, oldest, null);
        }
    }

    public LmStudioHost? HostOf(string responseId) => _hosts.TryGetValue(responseId, out var host) ? host : null;
}
