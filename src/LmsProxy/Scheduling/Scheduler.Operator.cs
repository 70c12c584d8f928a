
namespace LmsProxy.Scheduling;

/// <summary>An operator's hand on the scheduler: background loads (preload, the Load button), pins, unloads.</summary>
internal sealed partial class Scheduler
{
    /// <summary>Loads a model in the background (preload, operator), through the same queue as requests.</summary>
    public void EnsureLoadedInBackground(string model)
    {
        var key = KnownKey(model, null);
        if (key is null) return;
        lock (_lock)
        {
            var group = GroupFor(key, null);
            if (group.Waiters.Any(w => w.Background) || InstancesOf(key).Any(i => i.State is InstanceState.Ready or InstanceState.Loading)) return;
            group.Add(new Waiter(_time.GetTimestamp(), background: true, expires: _time.GetTimestamp() + ToTimestamp(_settings.Current.Loading.LoadTimeout)));
            Pump();
        }
    }

    /// <summary>The preload keeper's call: loads a preloaded model again, unless an operator unloaded or unpinned it.</summary>
    public void KeepPreloaded(string model)
    {
        var key = KnownKey(model, null);
        if (key is null) return;
        lock (_operatorPins)
        {
            if (_operatorPins.TryGetValue(key, out var pinned) && !pinned) return;
        }
        EnsureLoadedInBackground(key);
    }

    /// <summary>Whether the proxy never unloads the model: preloaded ones, unless an operator unpinned them, and operator pins.</summary>
    public bool IsPinned(string key)
    {
        lock (_operatorPins)
        {
            if (_operatorPins.TryGetValue(key, out var pinned)) return pinned;
        }
        var options = _settings.Current;
        return options.Loading.Preload.Any(p => string.Equals(_catalog.Resolve(options.Loading.ResolveAlias(p))?.Key ?? options.Loading.ResolveAlias(p), key, StringComparison.OrdinalIgnoreCase));
    }

    public void SetPinned(string key, bool pinned)
    {
        lock (_operatorPins) _operatorPins[key] = pinned;
        SavePin(key, pinned);
        lock (_lock) Pump();
    }

    /// <summary>An operator's unload: idle instances go now, busy ones stop taking requests and go once drained.</summary>
    public string Unload(string key)
    {
        lock (_operatorPins) _operatorPins[key] = false;
        SavePin(key, false);
        lock (_lock)
        {
            var instances = InstancesOf(key).Where(i => i.State is InstanceState.Ready or InstanceState.Draining).ToList();
            if (instances.Count == 0) return $"'{key}' is not loaded.";
            foreach (var instance in instances)
            {
                instance.UnloadWhenDrained = true;
                instance.SetState(InstanceState.Draining);
            }
            _dirty = true;
            Pump();
            return $"'{key}' takes no new requests and is unloaded once its {instances.Sum(i => i.InFlight)} request(s) in flight finish.";
        }
    }
}
