using LmsProxy.Configuration;
using LmsProxy.Loading;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace LmsProxy.Diagnostics;

/// <summary>Says once, at start-up, where to point clients, what LM Studio is behind, and how models get loaded.</summary>
internal static partial class StartupBanner
{
    public static void Write(WebApplication app)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("LmsProxy");
        var options = app.Services.GetRequiredService<ProxySettings>().Current;
        var loader = app.Services.GetRequiredService<LoaderSelector>().Current;
        var addresses = app.Services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses) LogListening(logger, address.TrimEnd('/') + "/v1");
        LogUpstream(logger, options.Upstream);
        if (loader.LmsPath is null && options.Loader != LoaderKind.Rest) LogLmsMissing(logger, loader.Reason);
        else LogLoader(logger, loader.Name, loader.Reason);
        if (options.Preload.Count > 0) LogPreload(logger, string.Join(", ", options.Preload));
    }

    [LoggerMessage(EventId = 40, Level = LogLevel.Information, Message = "LmsProxy ready: point OpenAI clients at {BaseUrl}")]
    private static partial void LogListening(ILogger logger, string baseUrl);

    [LoggerMessage(EventId = 41, Level = LogLevel.Information, Message = "Upstream LM Studio: {Upstream}")]
    private static partial void LogUpstream(ILogger logger, Uri upstream);

    [LoggerMessage(EventId = 42, Level = LogLevel.Information, Message = "Loader: {Loader} ({Reason})")]
    private static partial void LogLoader(ILogger logger, string loader, string reason);

    [LoggerMessage(EventId = 43, Level = LogLevel.Warning, Message = "{Reason}")]
    private static partial void LogLmsMissing(ILogger logger, string reason);

    [LoggerMessage(EventId = 44, Level = LogLevel.Information, Message = "Preloading and keeping loaded: {Models}")]
    private static partial void LogPreload(ILogger logger, string models);
}
