using LmsProxy.Loading;

namespace LmsProxy.Diagnostics;

/// <summary>/healthz: the proxy is alive. /readyz: LM Studio answers behind it.</summary>
public static class HealthEndpoints
{
    public static void MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" }));
        app.MapGet("/readyz", async (LmStudioApi api, CancellationToken cancellationToken) =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            var (ready, detail) = await api.ProbeAsync(timeout.Token);
            return Results.Json(new { status = ready ? "ready" : "not_ready", reason = detail },
                statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
    }
}
