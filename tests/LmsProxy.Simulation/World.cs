using LmsProxy.Scheduling;
using LmsProxy.Scheduling.Policy;
using Microsoft.Extensions.Time.Testing;

namespace LmsProxy.Simulation;

/// <summary>
/// One run of a workload in virtual time (a FakeTimeProvider): LM Studio hosts that really hold memory, refuse what
/// does not fit, die and come back, and lose models to someone else; clients that arrive, wait, leave and are cut off;
/// and a stand-in for the scheduler's machinery around the real <see cref="PlacementPolicy"/>: the warm path, wait
/// groups, loads and unloads that take time and can fail, learning from refusals, re-sends. After every event the
/// policy is asked, its decisions applied, and the invariants checked (<see cref="Invariants"/>). (Why this file is
/// long: it is one event loop, and splitting it would spread its state over several files.)
/// </summary>
internal sealed partial class World
{
    private static readonly TimeSpan UnloadTime = TimeSpan.FromMilliseconds(300);
    private static readonly TimeSpan HoldTimeout = TimeSpan.FromMinutes(5);
    private const int MaxResends = 40;

    private readonly Workload _workload;
    private readonly Random _random;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly PriorityQueue<Event, (long, long)> _events = new();
    private readonly Dictionary<string, SimHost> _hosts = [];
    private readonly Dictionary<string, SimModel> _models;
    private readonly Dictionary<string, List<SimRequest>> _groups = [];
    private readonly List<SimRequest> _requests = [];
    private readonly List<(long At, object What)> _trace = [];
    private long _sequence;
    private long _stopArrivals;
    private long _started;

    public World(Workload workload)
    {
        _workload = workload;
        _random = new Random(workload.Seed ^ 0x5EED);
        _models = workload.Models.ToDictionary(m => m.Key);
        foreach (var spec in workload.Hosts)
        {
            var host = new SimHost(spec);
            if (spec.ForeignModel is { } foreign && _models.TryGetValue(foreign, out var model) && model.Bytes < spec.TrueMemory)
            {
                host.Instances.Add(new SimInstance(foreign, model.Bytes, spec.Parallel) { State = InstanceState.Ready, ByProxy = false });
            }
            _hosts[spec.Name] = host;
        }
    }

    public int Events { get; private set; }

    public int InvariantChecks { get; private set; }

    public IReadOnlyList<SimRequest> Requests => _requests;

    private long Now => _time.GetTimestamp();

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    private abstract record Event;
    private sealed record Arrive(SimClient Client) : Event;
    private sealed record Finish(SimRequest Request, SimInstance Instance) : Event;
    private sealed record LoadDone(SimHost Host, SimInstance Instance, IReadOnlyList<SimInstance> Victims) : Event;
    private sealed record UnloadDone(SimHost Host, SimInstance Instance, string Reason) : Event;
    private sealed record Deadline(SimRequest Request) : Event;
    private sealed record Cancel(SimRequest Request) : Event;
    private sealed record Wake : Event;
    private sealed record Fault(SimFault What) : Event;

    /// <summary>Runs the workload to its end and then until every request is over; throws <see cref="InvariantViolation"/> with the trace.</summary>
    public void Run()
    {
        foreach (var client in _workload.Clients) At(client.Start, new Arrive(client));
        foreach (var fault in _workload.Faults) At(fault.At, new Fault(fault));
        _stopArrivals = Ticks(_workload.Length) + Now;
        _started = Now;
        while (_events.TryDequeue(out var next, out var key))
        {
            // Exactly to the event's timestamp (FakeTimeProvider counts in TimeSpan ticks): a wake-up due at t runs at t.
            if (key.Item1 > Now) _time.Advance(TimeSpan.FromTicks((key.Item1 - Now) * TimeSpan.TicksPerSecond / _time.TimestampFrequency));
            Events++;
            Handle(next);
            Pump();
            Check();
            if (Events > 200_000) throw Violation("the run does not end (more than 200,000 events)");
        }
        CheckEnd();
    }

    private void At(TimeSpan after, Event e) => _events.Enqueue(e, (Now + Ticks(after), _sequence++));

    private void AtTimestamp(long when, Event e) => _events.Enqueue(e, (Math.Max(when, Now), _sequence++));

    /// <summary>Kept raw (a decision record, or a line) and formatted only when a seed fails: the run stays fast.</summary>
    private void Trace(object what)
    {
        _trace.Add((Now, what));
        if (_trace.Count > 400) _trace.RemoveRange(0, 100);
    }

    private string FormatTrace() => string.Join("\n  ", _trace.TakeLast(60).Select(t =>
        $"{TimeSpan.FromSeconds((t.At - _started) / (double)_time.TimestampFrequency):hh\\:mm\\:ss\\.fff} {Describe(t.What)}"));

    private static string Describe(object what) => what switch
    {
        LoadDecision l => $"decide: load {l.Model} on {l.Host}{(l.Victims.Count > 0 ? " after unloading " + string.Join(", ", l.Victims) : "")}{(l.GroupId is null ? " (spill)" : "")}",
        GrantDecision g => $"decide: grant {g.GroupId.Replace('\n', '@')} on {string.Join(", ", g.Hosts)}",
        WaitDecision w => $"decide: {w.GroupId.Replace('\n', '@')} waits: {w.Situation}",
        Decision d => "decide: " + d,
        _ => what.ToString() ?? "",
    };

    private void Handle(Event e)
    {
        switch (e)
        {
            case Arrive arrive when Now < _stopArrivals:
                var request = new SimRequest(_requests.Count, arrive.Client, Now, Now + Ticks(HoldTimeout)) { Ahead = _groups.Count };
                _requests.Add(request);
                Trace($"arrive r{request.Id} {arrive.Client.Model}{(arrive.Client.PinHost is { } p ? " pinned " + p : "")}");
                if (_random.NextDouble() < _workload.CancelRate) At(TimeSpan.FromMilliseconds(_random.Next(10, 3000)), new Cancel(request));
                AtTimestamp(request.DeadlineAt, new Deadline(request));
                Admit(request);
                break;
            case Finish finish when finish.Request.Instance == finish.Instance && finish.Request.State == RequestState.Running:
                EndRunning(finish.Request, RequestState.Done);
                At(finish.Request.Client.Think, new Arrive(finish.Request.Client));
                break;
            case LoadDone done:
                CompleteLoad(done);
                break;
            case UnloadDone done:
                CompleteUnload(done);
                break;
            case Deadline deadline when deadline.Request.State == RequestState.Waiting:
                Leave(deadline.Request, RequestState.TimedOut);
                Trace($"timeout r{deadline.Request.Id}");
                break;
            case Cancel cancel when cancel.Request.State == RequestState.Waiting:
                Leave(cancel.Request, RequestState.Cancelled);
                Trace($"cancel r{cancel.Request.Id}");
                break;
            case Cancel cancel when cancel.Request.State == RequestState.Running:
                EndRunning(cancel.Request, RequestState.Cancelled);
                Trace($"cancel r{cancel.Request.Id} (running)");
                break;
            case Fault fault:
                ApplyFault(fault.What);
                break;
            case Wake:
                _wakes.Remove(Now);
                break;
        }
    }

    /// <summary>The warm path first (a ready instance on a healthy host), else the request joins its model's group.</summary>
    private void Admit(SimRequest request)
    {
        var model = request.Client.Model;
        var candidates = _hosts.Values.Where(h => request.Client.PinHost is null || h.Name == request.Client.PinHost)
            .SelectMany(h => h.Instances.Where(i => i.Model == model && i.State == InstanceState.Ready && h.Allows(model)).Select(i => (Host: h, Instance: i))).ToList();
        var warm = candidates.Where(c => c.Host.Healthy).OrderBy(c => c.Instance.InFlight).FirstOrDefault();
        if (warm.Instance is null && !_hosts.Values.Any(h => h.Healthy && h.CanServe(model) && (request.Client.PinHost is null || h.Name == request.Client.PinHost)))
        {
            warm = candidates.OrderBy(c => c.Instance.InFlight).FirstOrDefault(); // "panic": no healthy host could serve it
        }
        if (warm.Instance is not null)
        {
            Start(request, warm.Host, warm.Instance, "warm");
            return;
        }
        request.State = RequestState.Waiting;
        var id = GroupId(request);
        long? rankBefore = null;
        if (_groups.TryGetValue(id, out var group)) rankBefore = Rank(id, group);
        else _groups[id] = group = [];
        group.Add(request);
        CountOvertakes(id, group, rankBefore);
    }

    private static string GroupId(SimRequest request) => request.Client.PinHost is null ? request.Client.Model : request.Client.Model + "\n" + request.Client.PinHost;

    private void Leave(SimRequest request, RequestState state)
    {
        _groups[GroupId(request)].Remove(request);
        if (_groups[GroupId(request)].Count == 0) _groups.Remove(GroupId(request));
        request.State = state;
        request.EndedAt = Now;
    }

    private void Start(SimRequest request, SimHost host, SimInstance instance, string how)
    {
        if (instance.State != InstanceState.Ready) throw Violation($"invariant 7: r{request.Id} leased {instance.Model} on {host.Name} in state {instance.State}");
        if (!host.Alive)
        {
            // The forward is refused: the proxy marks the host down and the request goes round again.
            host.Healthy = false;
            Trace($"r{request.Id} refused by dead {host.Name}: host marked down");
            Resend(request);
            return;
        }
        request.State = RequestState.Running;
        request.Instance = instance;
        request.Host = host;
        request.StartedAt ??= Now;
        instance.InFlight++;
        instance.LastUsed = Now;
        Trace($"{how} r{request.Id} -> {instance.Model}@{host.Name} ({instance.InFlight} in flight)");
        At(request.Client.Duration, new Finish(request, instance));
    }

    private void EndRunning(SimRequest request, RequestState state)
    {
        var instance = request.Instance!;
        instance.InFlight--;
        instance.LastUsed = Now;
        request.Instance = null;
        request.State = state;
        request.EndedAt = Now;
    }

    /// <summary>Cut off before any answer (the model was unloaded under it, the host died): sent again, through the policy.</summary>
    private void Resend(SimRequest request)
    {
        if (++request.Resends > MaxResends)
        {
            request.State = RequestState.Refused;
            request.EndedAt = Now;
            request.Refusal = "re-sends exhausted";
            return;
        }
        Admit(request);
    }
}

internal enum RequestState
{
    Waiting,
    Running,
    Done,
    Refused,
    TimedOut,
    Cancelled,
}

internal sealed class SimRequest(int id, SimClient client, long arrived, long deadlineAt)
{
    public int Id { get; } = id;
    public SimClient Client { get; } = client;
    public long Arrived { get; } = arrived;
    public long DeadlineAt { get; } = deadlineAt;
    public RequestState State { get; set; }
    public SimInstance? Instance { get; set; }
    public SimHost? Host { get; set; }
    public long? StartedAt { get; set; }
    public long EndedAt { get; set; }
    public int Resends { get; set; }
    public string? Refusal { get; set; }

    /// <summary>Wait groups (other models, or the same model pinned elsewhere) already waiting when it arrived.</summary>
    public int Ahead { get; set; }

    /// <summary>Something outside the policy's control happened while it waited (a host died, a refusal, an edit).</summary>
    public bool Disturbed { get; set; }
}

internal sealed class SimInstance(string model, long bytes, int parallel)
{
    public string Model { get; } = model;
    public long Bytes { get; } = bytes;
    public int Parallel { get; } = parallel;
    public InstanceState State { get; set; } = InstanceState.Loading;
    public int InFlight { get; set; }
    public long LastUsed { get; set; }
    public long LoadedAt { get; set; }
    public bool ByProxy { get; set; } = true;
    public bool UnloadWhenDrained { get; set; }
}

internal sealed class SimHost(SimHostSpec spec)
{
    public SimHostSpec Spec { get; } = spec;
    public string Name => Spec.Name;
    public bool Alive { get; set; } = true;
    public bool Healthy { get; set; } = true;
    public bool Busy { get; set; }
    public long ConfiguredBudget { get; set; } = spec.ConfiguredBudget;
    public int MaxLoadedModels { get; set; } = spec.MaxLoadedModels;
    public long LearnedCeiling { get; set; }
    public Dictionary<string, long> TooLargeUntil { get; } = [];
    public Dictionary<string, TimeSpan> LoadTimes { get; } = [];
    public List<SimInstance> Instances { get; } = [];

    public long Budget => ConfiguredBudget > 0 && LearnedCeiling > 0 ? Math.Min(ConfiguredBudget, LearnedCeiling) : Math.Max(ConfiguredBudget, LearnedCeiling);

    public bool Allows(string model) => Spec.Allowed.Count == 0 || Spec.Allowed.Contains(model);

    public bool CanServe(string model) => Spec.Downloaded.Contains(model) && Allows(model);
}

internal sealed class InvariantViolation(string message) : Exception(message);
