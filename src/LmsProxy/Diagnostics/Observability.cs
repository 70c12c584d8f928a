using OpenTelemetry.Metrics;

namespace LmsProxy.Diagnostics;

/// <summary>Metrics from .NET meters, exported in Prometheus text format at /metrics.</summary>
public static class Observability
{
    public static IServiceCollection AddObservability(this IServiceCollection services)
    {
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(ProxyMetrics.MeterName)
            .AddView("lmsproxy.hold.duration", new ExplicitBucketHistogramConfiguration { Boundaries = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300] })
            .AddView("lmsproxy.model.load.duration", new ExplicitBucketHistogramConfiguration { Boundaries = [0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300] })
            .AddPrometheusExporter());
        return services;
    }

    public static void MapMetricsEndpoint(this IEndpointRouteBuilder app) => app.MapPrometheusScrapingEndpoint("/metrics");
}
