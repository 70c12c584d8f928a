using LmsProxy.Configuration;
using LmsProxy.Hosts;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace LmsProxy.Diagnostics;

/// <summary>Says once, at start-up, where to point clients, which LM Studio hosts are behind, and how models get loaded.</summary>
internal static partial class StartupBanner
{
    public static void Write(WebApplication app)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("LmsProxy");
        var options = app.Services.GetRequiredService<ProxySettings>().Current;
        var addresses = app.Services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses) LogListening(logger, address.TrimEnd('/') + "/v1");
        foreach (var host in app.Services.GetRequiredService<HostCluster>().Hosts)
        {
            LogUpstream(logger, host.Name, host.Url);
            if (host.Loader.LmsPath is null && host.Options.Loader != LoaderKind.Rest && host.Url.IsLoopback) LogLmsMissing(logger, host.Loader.Reason);
            else LogLoader(logger, host.Name, host.Loader.Name, host.Loader.Reason);
        }
        if (options.Loading.Preload.Count > 0) LogPreload(logger, string.Join(", ", options.Loading.Preload));
        if (app.Services.GetRequiredService<Security.ListenAddresses>().ExposureWarning(options) is { } exposed) LogExposed(logger, exposed);
    }

    [LoggerMessage(EventId = 40, Level = LogLevel.Information, Message = "LmsProxy ready: point OpenAI clients at {BaseUrl}")]
    private static partial void LogListening(ILogger logger, string baseUrl);

    [LoggerMessage(EventId = 41, Level = LogLevel.Information, Message = "LM Studio host {Host}: {Upstream}")]
    private static partial void LogUpstream(ILogger logger, string host, Uri upstream);

    [LoggerMessage(EventId = 42, Level = LogLevel.Information, Message = "Loader on {Host}: {Loader} ({Reason})")]
    private static partial void LogLoader(ILogger logger, string host, string loader, string reason);

    [LoggerMessage(EventId = 43, Level = LogLevel.Warning, Message = "{Reason}")]
    private static partial void LogLmsMissing(ILogger logger, string reason);

    [LoggerMessage(EventId = 44, Level = LogLevel.Information, Message = "Preloading and keeping loaded (pinned): {Models}")]
    private static partial void LogPreload(ILogger logger, string models);

    [LoggerMessage(EventId = 45, Level = LogLevel.Warning, Message = "{Warning}")]
    private static partial void LogExposed(ILogger logger, string warning);
}
