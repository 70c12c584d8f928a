using System.Reflection;
using LmsProxy.Scheduling;

namespace LmsProxy.Diagnostics;

/// <summary>
/// GET /status: what the proxy is doing, for people and scripts (GET / shows it as a page). POST /models/{key}/load,
/// /unload, /pin, /unpin: an operator's hand on the scheduler, protected like /status, and only with the
/// X-LmsProxy-Action header (which a cross-site form cannot send).
/// </summary>
internal static class StatusEndpoints
{
    public const string ActionHeader = "X-LmsProxy-Action";

    private static readonly string Version =
        typeof(StatusEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown";

    public static void MapStatusEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/status", async (HttpContext context, Scheduler scheduler, Security.ListenAddresses listening, Configuration.ProxySettings settings, Storage.StateStore store,
            Keys.KeyRegistry keys, Sharing.SharingGate sharing, Activity.ActivityRecorder activity, TimeProvider time, CancellationToken cancellationToken) =>
        {
            var probe = await ProbeFirstAsync(scheduler, cancellationToken);
            return Results.Json(Report(scheduler, listening, settings, store, probe) with
            {
                Keys = Sharing.KeyReport.For(Keys.ApiKey.Of(context), keys, sharing, activity.Usage, settings.Current, time),
            }, DiagnosticsJson.Default.StatusReport);
        });
        app.MapGet("/events", StatusEvents.StreamAsync);
        app.MapGet("/", (HttpResponse response) =>
        {
            Security.StatusPageHeaders.Apply(response);
            return Results.Content(StatusPage.Html, "text/html; charset=utf-8");
        });
        app.MapPost("/models/{**rest}", async (string rest, HttpContext context, Scheduler scheduler) =>
        {
            if (!context.Request.Headers.ContainsKey(ActionHeader))
            {
                return Results.Json(new ActionError($"Send the header {ActionHeader}: 1 with operator actions."), DiagnosticsJson.Default.ActionError, statusCode: StatusCodes.Status400BadRequest);
            }
            var slash = rest.LastIndexOf('/');
            var (name, action) = slash > 0 ? (Uri.UnescapeDataString(rest[..slash]), rest[(slash + 1)..]) : (rest, "");
            var key = scheduler.Catalog.Resolve(name)?.Key;
            if (key is null) return Results.Json(new ActionError($"No host lists a model '{name}'."), DiagnosticsJson.Default.ActionError, statusCode: StatusCodes.Status404NotFound);
            switch (action)
            {
                case "load":
                    scheduler.EnsureLoadedInBackground(key);
                    return Results.Json(new ActionAccepted(key, action, $"'{key}' is being loaded (or already is)."), DiagnosticsJson.Default.ActionAccepted, statusCode: StatusCodes.Status202Accepted);
                case "unload":
                    return Results.Json(new ActionAccepted(key, action, scheduler.Unload(key)), DiagnosticsJson.Default.ActionAccepted, statusCode: StatusCodes.Status202Accepted);
                case "pin" or "unpin":
                    scheduler.SetPinned(key, action == "pin");
                    return Results.Json(new PinResult(key, action, action == "pin"), DiagnosticsJson.Default.PinResult);
                default:
                    return Results.Json(new ActionError($"Unknown action '{action}': use load, unload, pin or unpin."), DiagnosticsJson.Default.ActionError, statusCode: StatusCodes.Status404NotFound);
            }
        });
    }

    /// <summary>What GET /status answers, with the first host's probe already made (GET /events probes less often).</summary>
    internal static StatusReport Report(Scheduler scheduler, Security.ListenAddresses listening, Configuration.ProxySettings settings, Storage.StateStore store, (bool Reachable, string Detail) probe)
    {
        string[] warnings = listening.ExposureWarning(settings.Current) is { } exposed ? [exposed] : [];
        // Which app each host runs (LM Studio or Bionic, F26), as its greeting said.
        var apps = scheduler.Hosts.ToDictionary(h => h.Name, h => h.Api.App is { } app ? (app.Version is null ? app.Name : $"{app.Name} {app.Version}") : null);
        return StatusReport.From(Version, scheduler.Snapshot(), scheduler.Hosts.FirstOrDefault()?.Url, probe.Reachable, probe.Detail, apps) with { Warnings = warnings, Store = store.Status };
    }

    internal static async Task<(bool Reachable, string Detail)> ProbeFirstAsync(Scheduler scheduler, CancellationToken cancellationToken) =>
        scheduler.Hosts.FirstOrDefault() is { } first ? await ProbeAsync(first.Api, cancellationToken) : (false, "No host is configured.");

    private static async Task<(bool, string)> ProbeAsync(Loading.LmStudioApi api, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        return await api.ProbeAsync(timeout.Token);
    }
}

/// <summary>The JSON of GET /status (camelCase).</summary>
internal sealed record StatusReport(
    string Version,
    StatusReport.UpstreamStatus Upstream,
    StatusReport.LoaderStatus Loader,
    DateTimeOffset? ModelsRefreshedAt,
    IReadOnlyList<StatusReport.HostStatus> Hosts,
    IReadOnlyList<StatusReport.ModelStatus> Models,
    IReadOnlyList<CapacityEvent> Events,
    IReadOnlyDictionary<string, int> Unloads,
    int Swaps)
{
    /// <summary>What the operator should fix (listening beyond loopback without API keys).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>Per key: in flight, queued, and today's use against its limits (an inference key sees only itself).</summary>
    public IReadOnlyList<Sharing.KeyStatus> Keys { get; init; } = [];

    /// <summary>The state store: its file, whether it is written, and why not.</summary>
    public Storage.StoreStatus? Store { get; init; }

    /// <summary>The waiting requests per model queue (empty when nothing waits).</summary>
    public IReadOnlyList<QueueStatus> Queues { get; init; } = [];

    public static StatusReport From(string version, StatusSnapshot snapshot, Uri? firstUrl, bool reachable, string detail, IReadOnlyDictionary<string, string?>? apps = null)
    {
        var first = snapshot.Hosts.FirstOrDefault();
        var hosts = snapshot.Hosts.Select(h => new HostStatus(
            h.Name, h.Url.ToString(), h.Healthy, new LoaderStatus(h.Loader.Name, h.Loader.LmsPath, h.Loader.Reason), h.RefreshedAt, h.LastError, h.Operation,
            new CapacityStatus(h.Capacity.MaxLoadedModels, h.Capacity.MemoryBudgetBytes, h.BudgetBytes, h.LearnedCeilingBytes,
                h.Instances.Where(i => i.State != InstanceState.Gone).Sum(i => i.EstimatedBytes), h.Instances.Count(i => i.State != InstanceState.Gone),
                h.Capacity.IdleUnloadAfter, h.Capacity.MaxSwapWait, h.Capacity.EvictForeign),
            [.. h.Instances.Select(i => new InstanceStatus(i.Model, StateName(i), i.InFlight, i.LoadedByProxy, i.Pinned, i.EstimatedBytes, i.Parallel, i.LastUsedAt, i.LoadedAt, i.LoadStartedAt, i.Ids, i.LastLoadMs)
            {
                LoadProgress = i.Load?.Progress is { } p ? Math.Round(p, 3) : null, ProgressSource = i.Load?.Source, EtaMs = i.Load?.EtaMs is { } eta ? Math.Round(eta) : null,
            })],
            h.Downloaded, apps?.GetValueOrDefault(h.Name))).ToList();
        var models = snapshot.Models.Select(m =>
        {
            var instances = snapshot.Hosts.SelectMany(h => h.Instances.Where(i => string.Equals(i.Model, m.Key, StringComparison.OrdinalIgnoreCase)).Select(i => (Host: h.Name, Instance: i))).ToList();
            var loaded = instances.Where(i => i.Instance.State is InstanceState.Ready or InstanceState.Draining).ToList();
            var loading = instances.Any(i => i.Instance.State == InstanceState.Loading);
            var state = loading ? "loading"
                : instances.Any(i => i.Instance.State == InstanceState.Unloading) ? "unloading"
                : loaded.Count == 0 ? "not loaded"
                : loaded.Any(i => i.Instance.State == InstanceState.Draining) ? "draining"
                : loaded.Any(i => i.Instance.InFlight > 0) ? "busy" : "idle";
            return new ModelStatus(m.Key, m.Type, state, loaded.Count > 0, [.. loaded.SelectMany(i => i.Instance.Ids)], [.. loaded.Select(i => i.Host)], loading, m.Held, m.Situation,
                loaded.Sum(i => i.Instance.InFlight), m.Pinned, loaded.Select(i => i.Instance.LastUsedAt).Max(),
                loaded.Sum(i => i.Instance.EstimatedBytes), m.LastLoadMs, loaded.Select(i => i.Instance.LoadedAt).Max(), m.LastError, m.LastErrorAt);
        }).ToList();
        return new StatusReport(
            version,
            new UpstreamStatus(firstUrl?.ToString() ?? "", reachable, detail),
            first is null ? new LoaderStatus("none", null, "No host is configured.") : new LoaderStatus(first.Loader.Name, first.Loader.LmsPath, first.Loader.Reason),
            snapshot.Hosts.Select(h => h.RefreshedAt).Where(r => r is not null).DefaultIfEmpty(null).Min(),
            hosts, models, snapshot.Events, snapshot.Unloads, snapshot.Swaps)
        {
            Queues = [.. snapshot.Queues.Select(q => new QueueStatus(q.Model, q.Host, q.WaitingFor, q.Situation, q.LoadProgress is { } p ? Math.Round(p, 3) : null, q.ProgressSource,
                q.EtaMs is { } eta ? Math.Round(eta) : null, [.. q.Waiters.Select(w => new WaiterStatus(w.Position, Math.Round(w.AgeMs), w.EtaMs is { } e ? Math.Round(e) : null))]))],
        };
    }

    private static string StateName(InstanceSnapshot i) => i.State switch
    {
        InstanceState.Ready => i.InFlight > 0 ? "busy" : "idle",
        _ => i.State.ToString().ToLowerInvariant(),
    };

    public sealed record UpstreamStatus(string Url, bool Reachable, string Detail);

    public sealed record LoaderStatus(string Name, string? LmsPath, string Reason);

    public sealed record HostStatus(string Name, string Url, bool Healthy, LoaderStatus Loader, DateTimeOffset? RefreshedAt, string? LastError, string? Operation,
        CapacityStatus Capacity, IReadOnlyList<InstanceStatus> Instances, IReadOnlyList<string> Downloaded, string? App = null);

    public sealed record CapacityStatus(int MaxLoadedModels, long MemoryBudgetBytes, long EffectiveBudgetBytes, long LearnedCeilingBytes, long UsedBytes, int LoadedModels,
        TimeSpan IdleUnloadAfter, string MaxSwapWait, bool EvictForeign);

    public sealed record InstanceStatus(string Model, string State, int InFlight, bool LoadedByProxy, bool Pinned, long EstimatedBytes, int Parallel,
        DateTimeOffset? LastUsedAt, DateTimeOffset? LoadedAt, DateTimeOffset? LoadStartedAt, IReadOnlyList<string> Ids, double? LastLoadMs)
    {
        /// <summary>While loading: 0..1 (null: unknown, a first load without lms's percentage).</summary>
        public double? LoadProgress { get; init; }

        /// <summary>"lms" (its spinner's percentage) or "estimate" (from the last load time).</summary>
        public string? ProgressSource { get; init; }

        public double? EtaMs { get; init; }
    }

    /// <summary>One model's (and pinned host's) waiting requests: what they wait for, and each one's place and age.</summary>
    public sealed record QueueStatus(string Model, string? Host, string WaitingFor, string? Situation, double? LoadProgress, string? ProgressSource, double? EtaMs,
        IReadOnlyList<WaiterStatus> Waiters);

    public sealed record WaiterStatus(int Position, double AgeMs, double? EtaMs);

    public sealed record ModelStatus(string Key, string? Type, string State, bool Loaded, IReadOnlyList<string> Instances, IReadOnlyList<string> Hosts, bool Loading,
        int Held, string? Waiting, int InFlight, bool Pinned, DateTimeOffset? LastUsedAt, long EstimatedBytes, double? LastLoadMs, DateTimeOffset? LastLoadedAt, string? LastError, DateTimeOffset? LastErrorAt);
}
