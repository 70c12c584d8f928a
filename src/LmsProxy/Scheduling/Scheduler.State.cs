using System.Globalization;
using LmsProxy.Hosts;
using LmsProxy.Storage;

namespace LmsProxy.Scheduling;

/// <summary>
/// What the scheduler learned and was told, kept across a restart: operator pins, learned ceilings per host, learned
/// footprints per model, the last load time per host and model. Restored once at construction (before any request);
/// each change is saved as it happens (the store writes later, off the request path): the callers are the
/// operator actions (pins), learning (ceilings, footprints) and operations (load times).
/// </summary>
internal sealed partial class Scheduler
{
    private IStateStore? _state;

    private void RestoreState(IStateStore? state)
    {
        _state = state;
        if (state is null) return;
        foreach (var (key, value) in state.Load(StateKinds.Pin)) _operatorPins[key] = value == "true";
        foreach (var (model, value) in state.Load(StateKinds.Footprint))
        {
            if (long.TryParse(value, CultureInfo.InvariantCulture, out var bytes)) _learnedFootprint[model] = bytes;
        }
        foreach (var (name, value) in state.Load(StateKinds.Ceiling))
        {
            if (HostNamed(name) is { } host && long.TryParse(value, CultureInfo.InvariantCulture, out var bytes)) host.LearnedCeilingBytes = bytes;
        }
        foreach (var (key, value) in state.Load(StateKinds.LoadTime))
        {
            var (host, model) = StateKinds.SplitHostModel(key);
            if (double.TryParse(value, CultureInfo.InvariantCulture, out var ms)) _lastLoadDurations[(host, model)] = TimeSpan.FromMilliseconds(ms);
        }
    }

    private void SavePin(string key, bool pinned) => _state?.Save(StateKinds.Pin, key, pinned ? "true" : "false");

    private void SaveCeiling(LmStudioHost host) =>
        _state?.Save(StateKinds.Ceiling, host.Name, host.LearnedCeilingBytes > 0 ? host.LearnedCeilingBytes.ToString(CultureInfo.InvariantCulture) : null);

    private void SaveFootprint(string model, long bytes) => _state?.Save(StateKinds.Footprint, model, bytes.ToString(CultureInfo.InvariantCulture));

    private void SaveLoadTime(string host, string model, TimeSpan elapsed) =>
        _state?.Save(StateKinds.LoadTime, StateKinds.HostModel(host, model), elapsed.TotalMilliseconds.ToString("0.#", CultureInfo.InvariantCulture));
}
