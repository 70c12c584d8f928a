using LmsProxy.Diagnostics;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LmsProxy.Tests.Operability;

/// <summary>The hand-written Prometheus exporter, and the YARP services the proxy leaves out.</summary>
public sealed class PrometheusMetricsTests
{
    [Fact]
    public void Scrape_WritesCountersAndCumulativeHistograms_EscapesLabels_AndHearsOnlyItsOwnMeter()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        using var other = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new ProxyMetrics(services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var neighbour = new ProxyMetrics(other.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        using var exporter = new PrometheusMetrics(metrics);

        metrics.LoadEnded("qwen/\"odd\"\\name", "gpu-1", "success", TimeSpan.FromSeconds(0.7));
        metrics.LoadEnded("qwen/\"odd\"\\name", "gpu-1", "success", TimeSpan.FromSeconds(3));
        metrics.RequestEnded("qwen/qwen3-8b", "gpu-1", "forwarded");
        neighbour.LoadEnded("qwen/\"odd\"\\name", "gpu-1", "success", TimeSpan.FromSeconds(1));
        neighbour.RequestEnded("qwen/qwen3-8b", "gpu-1", "forwarded");

        var lines = exporter.Scrape().Split('\n');
        const string labels = "host=\"gpu-1\",model=\"qwen/\\\"odd\\\"\\\\name\",result=\"success\"";
        Assert.Contains("# TYPE lmsproxy_model_loads_total counter", lines);
        Assert.Contains($"lmsproxy_model_loads_total{{{labels}}} 2", lines);
        Assert.Contains("# TYPE lmsproxy_model_load_duration_seconds histogram", lines);
        Assert.Contains($"lmsproxy_model_load_duration_seconds_bucket{{{labels},le=\"0.5\"}} 0", lines);
        Assert.Contains($"lmsproxy_model_load_duration_seconds_bucket{{{labels},le=\"1\"}} 1", lines);
        Assert.Contains($"lmsproxy_model_load_duration_seconds_bucket{{{labels},le=\"5\"}} 2", lines);
        Assert.Contains($"lmsproxy_model_load_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 2", lines);
        Assert.Contains($"lmsproxy_model_load_duration_seconds_sum{{{labels}}} 3.7", lines);
        Assert.Contains($"lmsproxy_model_load_duration_seconds_count{{{labels}}} 2", lines);
        // An observable counter, read at the scrape: this proxy's one request, not the neighbour's.
        Assert.Contains("lmsproxy_requests_total{host=\"gpu-1\",model=\"qwen/qwen3-8b\",outcome=\"forwarded\"} 1", lines);
        metrics.RequestEnded("qwen/qwen3-8b", "gpu-1", "forwarded");
        Assert.Contains("lmsproxy_requests_total{host=\"gpu-1\",model=\"qwen/qwen3-8b\",outcome=\"forwarded\"} 2", exporter.Scrape().Split('\n'));
    }

    [Fact]
    public void Proxy_LeavesOutYarpsDataProtectionKeyRingAndAuthorization()
    {
        using var app = new Infrastructure.ProxyApp(new Uri("http://127.0.0.1:9"));

        // Data protection would create a key ring at start-up and store key files in the user's home directory.
        Assert.DoesNotContain(app.Services.GetServices<IHostedService>(), s => s.GetType().FullName!.Contains("DataProtection", StringComparison.Ordinal));
        // With authorization services, WebApplication runs AuthorizationMiddleware in front of every request.
        Assert.Null(app.Services.GetService<IAuthorizationHandlerProvider>());
    }
}
