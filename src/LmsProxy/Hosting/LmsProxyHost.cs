using System.Net;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Loading;
using LmsProxy.Models;
using LmsProxy.Proxy;
using LmsProxy.Security;

namespace LmsProxy.Hosting;

/// <summary>How the pieces are put together: services, then endpoints.</summary>
public static class LmsProxyHost
{
    /// <summary>The paths forwarded to LM Studio; anything else is the proxy's own or a 404.</summary>
    public static readonly string[] ForwardedPatterns = ["/v1/{**rest}", "/api/{**rest}", "/lmstudio-greeting"];

    public static IServiceCollection AddLmsProxy(this IServiceCollection services)
    {
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<ProxySettings>();
        services.AddHttpForwarder();
        services.AddMetrics();
        services.AddSingleton<UpstreamInvoker>();
        services.AddSingleton(sp => new LmStudioApi(
            new HttpClient(new SocketsHttpHandler
            {
                UseProxy = false,
                ConnectTimeout = sp.GetRequiredService<ProxySettings>().Current.ConnectTimeout,
                AutomaticDecompression = DecompressionMethods.All,
            }) { Timeout = Timeout.InfiniteTimeSpan },
            sp.GetRequiredService<ProxySettings>()));
        services.AddSingleton<RestModelLoader>();
        services.AddSingleton<LoaderSelector>();
        services.AddSingleton<ModelRegistry>();
        services.AddSingleton<ProxyMetrics>();
        services.AddSingleton<LoadCoordinator>();
        services.AddSingleton<ProxyHandler>();
        services.AddHostedService<ModelStateRefresher>();
        services.AddObservability();
        return services;
    }

    public static void MapLmsProxy(this WebApplication app)
    {
        app.UseMiddleware<ApiKeyMiddleware>();
        app.MapHealthEndpoints();
        app.MapStatusEndpoints();
        app.MapMetricsEndpoint();

        var handler = app.Services.GetRequiredService<ProxyHandler>();
        foreach (var pattern in ForwardedPatterns)
        {
            app.Map(pattern, handler.HandleAsync);
        }
        app.MapFallback((HttpContext context) => new ProxyError(StatusCodes.Status404NotFound, "unknown_path",
            $"LmsProxy forwards /v1/*, /api/* and /lmstudio-greeting to LM Studio; '{context.Request.Path}' is none of them.").WriteAsync(context));
    }
}
