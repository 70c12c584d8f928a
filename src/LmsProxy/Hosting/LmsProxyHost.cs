using LmsProxy.Activity;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Hosts;
using LmsProxy.Proxy;
using LmsProxy.Scheduling;
using LmsProxy.Security;
using LmsProxy.Storage;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Hosting;

/// <summary>How the pieces are put together: services, then endpoints.</summary>
internal static class LmsProxyHost
{
    public static IServiceCollection AddLmsProxy(this IServiceCollection services)
    {
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<ProxySettings>();
        // YARP's cluster model: one destination per LM Studio host, with its health checks. YARP probes with the
        // cluster's HTTP client, which checks the greeting's body.
        services.AddSingleton<IForwarderHttpClientFactory, HealthProbeClientFactory>();
        services.AddSingleton(sp => new InMemoryConfigProvider([], [HostCluster.ClusterFor(sp.GetRequiredService<ProxySettings>().Current)]));
        services.AddSingleton<IProxyConfigProvider>(sp => sp.GetRequiredService<InMemoryConfigProvider>());
        services.AddReverseProxy();
        WithoutUnusedYarpServices(services);
        services.AddMetrics();
        services.AddSingleton<HostCluster>();
        services.AddSingleton<ProxyMetrics>();
        services.AddSingleton<CapacityEvents>();
        // The store first: the scheduler and the affinity map restore from it when they are made.
        services.AddSingleton(sp => StateOptions.From(sp.GetRequiredService<IConfiguration>()));
        services.AddSingleton<StateStore>();
        services.AddSingleton<IStateStore>(sp => sp.GetRequiredService<StateStore>());
        services.AddSingleton(sp => sp.GetRequiredService<IConfiguration>().GetSection(ActivityOptions.SectionName).Get<ActivityOptions>() ?? new ActivityOptions());
        services.AddSingleton<ActivityRecorder>();
        services.AddSingleton<Scheduler>();
        services.AddSingleton<ConversationAffinity>();
        services.AddSingleton<UpstreamInvoker>();
        services.AddSingleton<HeldBodyBudget>();
        services.AddSingleton<ListenAddresses>();
        services.AddSingleton<HostHeaderGuard>();
        services.AddSingleton<ProxyHandler>();
        services.AddSingleton<Keys.KeyRegistry>();
        services.AddSingleton<Keys.AuthFailures>();
        services.AddSingleton<Sharing.SharingGate>();
        services.AddHostedService<HostRefresher>();
        if (WorkingSetTrimmer.Enabled) services.AddHostedService<WorkingSetTrimmer>();
        services.AddSingleton<PrometheusMetrics>();
        return services;
    }

    /// <summary>
    /// YARP registers ASP.NET Core authorization and data protection for route policies and session-affinity cookies,
    /// which LmsProxy does not use (its one credential check is ApiKeyMiddleware). Both cost: data protection creates a
    /// key ring at start-up (key files in the user's home, XML and OpenSSL in memory), and the authorization services
    /// make WebApplication run AuthorizationMiddleware in front of every request. YARP resolves neither without routes.
    /// </summary>
    private static void WithoutUnusedYarpServices(IServiceCollection services)
    {
        // Without a handler provider WebApplication adds no AuthorizationMiddleware; the two services built on it go too.
        // The policy provider stays: YARP's route validator asks for it.
        services.RemoveAll<IAuthorizationHandlerProvider>();
        services.RemoveAll<IAuthorizationService>();
        services.RemoveAll<Microsoft.AspNetCore.Authorization.Policy.IPolicyEvaluator>();
        for (var i = services.Count - 1; i >= 0; i--)
        {
            if (services[i].ServiceType == typeof(IHostedService) && services[i].ImplementationType?.FullName == "Microsoft.AspNetCore.DataProtection.Internal.DataProtectionHostedService")
            {
                services.RemoveAt(i);
            }
        }
    }

    public static void MapLmsProxy(this WebApplication app)
    {
        // No UseWebSockets: YARP forwards WebSocket upgrades itself (HTTP upgrade), and the middleware would cost every request.
        // Host, cross-site and content-type checks first: a rebinding or foreign page learns nothing, not even about keys.
        app.UseMiddleware<RequestGuard>();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.UseMiddleware<BufferedBody>();
        // The paths forwarded to LM Studio (RequestPaths.IsForwarded) go to the handler before routing: none of the
        // proxy's own endpoints is under them, and the route matcher with its catch-all values cost every request.
        var handler = app.Services.GetRequiredService<ProxyHandler>();
        app.Use(next => context => RequestPaths.IsForwarded(context.Request.Path) ? handler.HandleAsync(context) : next(context));
        app.UseRouting();
        app.MapHealthEndpoints();
        app.MapStatusEndpoints();
        app.MapActivityEndpoints();
        app.MapMetricsEndpoint();
        // No routes: YARP's route pipeline is not used (the direct forwarder is), but mapping it loads the cluster and starts its health checks.
        app.MapReverseProxy();
        app.MapFallback((HttpContext context) => new ProxyError(StatusCodes.Status404NotFound, "unknown_path",
            $"LmsProxy forwards /v1/*, /api/*, /lmstudio-greeting and LM Studio's WebSocket namespaces to LM Studio; '{context.Request.Path}' is none of them.").WriteAsync(context));
    }
}
