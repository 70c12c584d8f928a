using LmsProxy.Scheduling;

namespace LmsProxy.Diagnostics;

/// <summary>/healthz: the proxy is alive. /readyz: at least one LM Studio host behind it answers.</summary>
internal static class HealthEndpoints
{
    public static void MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Json(new HealthBody("ok"), DiagnosticsJson.Default.HealthBody));
        app.MapGet("/readyz", async (Scheduler scheduler, CancellationToken cancellationToken) =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            var probes = await Task.WhenAll(scheduler.Hosts.Select(async h => (h.Name, Probe: await h.Api.ProbeAsync(timeout.Token))));
            var ready = probes.Any(p => p.Probe.Ready);
            var reason = probes.Length == 1 ? probes[0].Probe.Detail : string.Join(" ", probes.Select(p => $"{p.Name}: {p.Probe.Detail}"));
            return Results.Json(new ReadyBody(ready ? "ready" : "not_ready", reason, probes.ToDictionary(p => p.Name, p => p.Probe.Ready)), DiagnosticsJson.Default.ReadyBody,
                statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
    }
}
