using LmsProxy.Configuration;
using LmsProxy.Loading;
using LmsProxy.Scheduling;

namespace LmsProxy.Hosts;

/// <summary>
/// Keeps the scheduler close to each host's truth (one REST call per host per interval, never per request), keeps the
/// preloaded models loaded (at start-up without blocking it, and whenever LM Studio dropped one), and reads lms's
/// model paths ahead of the first cold request.
/// </summary>
internal sealed partial class HostRefresher(
    HostCluster cluster,
    Scheduler scheduler,
    ProxySettings settings,
    TimeProvider time,
    ILogger<HostRefresher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var down = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var warmed = new HashSet<LmsCliLoader>();
        cluster.Changed += () => _ = RefreshOnceAsync(down, warmed, stoppingToken);
        while (!stoppingToken.IsCancellationRequested)
        {
            await RefreshOnceAsync(down, warmed, stoppingToken);
            try
            {
                await Task.Delay(settings.Current.Loading.RefreshInterval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One round. Never throws: nothing an upstream does may end this loop, and with it the process.</summary>
    private async Task RefreshOnceAsync(HashSet<string> down, HashSet<LmsCliLoader> warmed, CancellationToken stoppingToken)
    {
        try
        {
            await RefreshRoundAsync(down, warmed, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogRoundFailed(logger, ex.GetType().Name, ex.Message);
        }
    }

    private async Task RefreshRoundAsync(HashSet<string> down, HashSet<LmsCliLoader> warmed, CancellationToken stoppingToken)
    {
        await scheduler.RefreshAllAsync(stoppingToken);
        var snapshot = scheduler.Snapshot();
        lock (down)
        {
            foreach (var host in snapshot.Hosts)
            {
                if (host.LastError is { } error && down.Add(host.Name)) LogHostDown(logger, host.Name, error);
                else if (host.LastError is null && down.Remove(host.Name)) LogHostBack(logger, host.Name);
            }
        }
        foreach (var host in cluster.Hosts)
        {
            if (host.Loader.Loader is LmsCliLoader lms && host.RefreshedAt is not null && AddOnce(warmed, lms)) _ = lms.WarmPathsAsync(stoppingToken);
        }
        var options = settings.Current;
        foreach (var name in options.Loading.Preload) scheduler.KeepPreloaded(options.Loading.ResolveAlias(name));
    }

    private static bool AddOnce(HashSet<LmsCliLoader> set, LmsCliLoader loader)
    {
        lock (set) return set.Add(loader);
    }

    [LoggerMessage(EventId = 30, Level = LogLevel.Warning, Message = "Cannot read the model list of LM Studio host {Host}: {Reason}")]
    private static partial void LogHostDown(ILogger logger, string host, string reason);

    [LoggerMessage(EventId = 32, Level = LogLevel.Error, Message = "A refresh of the LM Studio hosts failed ({Type}: {Reason}); the next one runs as planned")]
    private static partial void LogRoundFailed(ILogger logger, string type, string reason);

    [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "LM Studio host {Host} answers again")]
    private static partial void LogHostBack(ILogger logger, string host);
}
