using LmsProxy.Scheduling;
using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Simulation;

/// <summary>
/// The invariants, checked after every event (and at the decisions they concern, in World.Scheduler.cs):
/// 1 a leased instance is never unloaded; 2 no model twice on one host; 3 a known budget is never exceeded by the
/// proxy's own loads; 4 every request ends (granted, refused with a reason, timed out, cancelled), no lost wake-up;
/// 5 no undisturbed wait longer than the swap bound plus a load per model ahead; 6 no refusal while a healthy host
/// could serve; 7 no lease on an instance that is not ready. Also: failover (no grant on a dead host while a live one
/// could serve), one operation at a time per host, every operation ends.
/// </summary>
internal sealed partial class World
{
    private void Check()
    {
        InvariantChecks++;
        foreach (var host in _hosts.Values)
        {
            var twice = host.Instances.Where(i => i.State != InstanceState.Gone).GroupBy(i => i.Model).FirstOrDefault(g => g.Count() > 1);
            if (twice is not null) throw Violation($"invariant 2: {twice.Key} twice on {host.Name}");
            if (host.Instances.FirstOrDefault(i => i.InFlight > 0 && i.State is InstanceState.Unloading or InstanceState.Loading or InstanceState.Gone) is { } bad)
            {
                throw Violation($"invariant 1: {bad.Model} on {host.Name} is {bad.State} with {bad.InFlight} in flight");
            }
        }
    }

    /// <summary>Invariant 5, for a request whose wait ends now.</summary>
    private void CheckWait(SimRequest request)
    {
        if (request.Disturbed || request.Resends > 0) return;
        var waited = TimeSpan.FromSeconds((Now - request.Arrived) / (double)_time.TimestampFrequency);
        var maxLoad = _workload.Models.Max(m => m.LoadTime);
        var maxBound = _workload.Hosts.Max(h => SwapBound.For(new HostLimits(0, TimeSpan.Zero, h.MaxSwapWait, false, 0), maxLoad, [maxLoad]));
        var maxDuration = _workload.Clients.Max(c => c.Duration);
        // Every other model that waits may be served first, once each: a bound, a drain, unloads and a load apiece; twice
        // that leaves room for swaps with several victims and hosts busy with something else, and still catches a
        // starved group or a lost wake-up (they wait for the 5-minute hold deadline).
        var ahead = request.Ahead + 1;
        var allowed = 2 * (maxBound + maxDuration + maxLoad + UnloadTime * 4) * ahead + TimeSpan.FromSeconds(1);
        if (waited > allowed) throw Violation($"invariant 5: r{request.Id} ({request.Client.Model}) waited {waited.TotalSeconds:0.0} s, more than {allowed.TotalSeconds:0.0} s");
    }

    private void CheckEnd()
    {
        if (_requests.FirstOrDefault(r => r.State is RequestState.Waiting or RequestState.Running) is { } open)
        {
            throw Violation($"invariant 4: r{open.Id} ({open.Client.Model}) never ended: {open.State}");
        }
        if (_groups.Count > 0) throw Violation($"invariant 4: {_groups.Count} wait groups left");
        foreach (var host in _hosts.Values)
        {
            if (host.Busy) throw Violation($"an operation on {host.Name} never ended");
            if (host.Instances.FirstOrDefault(i => i.State is InstanceState.Loading or InstanceState.Unloading) is { } stuck) throw Violation($"{stuck.Model} on {host.Name} left {stuck.State}");
        }
    }

    private InvariantViolation Violation(string what) =>
        new($"seed {_workload.Seed}: {what}\nlast events:\n  " + FormatTrace());
}
