using LmsProxy.Hosts;

namespace LmsProxy.Scheduling;

/// <summary>The wait queue of one model (and pinned host): its waiters in arrival order.</summary>
internal sealed partial class Scheduler
{
    private sealed class WaitGroup(string id, string key, LmStudioHost? pin)
    {
        public string Id { get; } = id;
        public string Key { get; } = key;
        public LmStudioHost? Pin { get; } = pin;
        /// <summary>In arrival order.</summary>
        public List<Waiter> Waiters { get; } = [];

        /// <summary>The requests among <see cref="Waiters"/> (background loads are not counted).</summary>
        public int Held { get; private set; }

        public string? Situation { get; set; }
        public long Oldest => Waiters.Count > 0 ? Waiters[0].Enqueued : long.MaxValue;

        /// <summary>The highest priority among its waiters' keys.</summary>
        public Keys.KeyPriority Priority => Waiters.Count > 0 ? Waiters.Max(w => w.Priority) : Keys.KeyPriority.Normal;

        public void Add(Waiter waiter)
        {
            Waiters.Add(waiter);
            if (!waiter.Background) Held++;
        }

        public bool Remove(Waiter waiter)
        {
            if (!Waiters.Remove(waiter)) return false;
            if (!waiter.Background) Held--;
            return true;
        }

        public void Clear()
        {
            Waiters.Clear();
            Held = 0;
        }
    }

    private sealed class Waiter(long enqueued, bool background, long expires = long.MaxValue)
    {
        public long Enqueued { get; } = enqueued;
        public bool Background { get; } = background;
        public long Expires { get; } = expires;
        public Keys.KeyPriority Priority { get; init; } = Keys.KeyPriority.Normal;
        public TaskCompletionSource<Admission> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Takes a waiter out of its group after its deadline or disconnect. Returns its admission if it was granted meanwhile.</summary>
    private Admission? Abandon(Waiter waiter, string key, LmStudioHost? pin, bool release = false)
    {
        lock (_lock)
        {
            if (_groups.TryGetValue(GroupId(key, pin), out var group) && group.Remove(waiter))
            {
                _waiting--;
                Pump();
                return null;
            }
        }
        // Granted in the meantime: a client that left gives its lease back; one that timed out keeps its answer.
        var granted = waiter.Done.Task.Result;
        if (release && granted.Leased is { } instance)
        {
            Release(instance);
            return null;
        }
        return granted;
    }

    private string HoldTimeoutDetail(string key, LmStudioHost? pin, TimeSpan waited)
    {
        lock (_lock)
        {
            var situation = _groups.TryGetValue(GroupId(key, pin), out var group) ? group.Situation : null;
            return $"'{key}' was not ready within {waited.TotalSeconds:0} s (LmsProxy:HoldTimeout): {situation ?? "it is still loading"}.";
        }
    }
}
