using LmsProxy.Configuration;
using LmsProxy.Loading;

namespace LmsProxy.Models;

/// <summary>
/// Keeps the registry close to LM Studio's truth (one REST call per interval, never per request) and keeps
/// the preloaded models loaded: at start-up, without blocking it, and again whenever LM Studio dropped one.
/// </summary>
public sealed partial class ModelStateRefresher(
    LmStudioApi api,
    ModelRegistry registry,
    LoadCoordinator coordinator,
    ProxySettings settings,
    TimeProvider time,
    ILogger<ModelStateRefresher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var upstreamWasDown = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await registry.RefreshAsync(api, stoppingToken);
                if (upstreamWasDown) LogUpstreamBack(logger);
                upstreamWasDown = false;
                KeepPreloaded();
            }
            catch (Exception ex) when (ex is UpstreamUnavailableException or UpstreamRefusedException)
            {
                if (!upstreamWasDown) LogUpstreamDown(logger, ex.Message);
                upstreamWasDown = true;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            try
            {
                await Task.Delay(settings.Current.RefreshInterval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void KeepPreloaded()
    {
        var options = settings.Current;
        foreach (var name in options.Preload)
        {
            var model = options.ResolveAlias(name);
            if (registry.IsLoaded(model)) continue;
            // Fire and forget: the coordinator logs the outcome and records it for /status.
            _ = coordinator.LoadInBackground(model);
        }
    }

    [LoggerMessage(EventId = 30, Level = LogLevel.Warning, Message = "Cannot read LM Studio's model list: {Reason}")]
    private static partial void LogUpstreamDown(ILogger logger, string reason);

    [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "LM Studio answers again")]
    private static partial void LogUpstreamBack(ILogger logger);
}
