
namespace LmsProxy.Scheduling;

/// <summary>The scheduler's log lines.</summary>
internal sealed partial class Scheduler
{
    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "Loading {Model} on {Host} with {Loader}")]
    private static partial void LogLoadStarted(ILogger logger, string model, string host, string loader);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "Loaded {Model} on {Host} in {DurationMs:0} ms")]
    private static partial void LogLoaded(ILogger logger, string model, string host, double durationMs);

    [LoggerMessage(EventId = 22, Level = LogLevel.Warning, Message = "Loading {Model} on {Host} failed: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 23, Level = LogLevel.Warning, Message = "Cannot check whether {Model} is loaded on {Host}, forwarding as it is")]
    private static partial void LogUnverified(ILogger logger, string model, string host);

    [LoggerMessage(EventId = 24, Level = LogLevel.Warning, Message = "LM Studio on {Host} refused to load {Model} for lack of memory; making room: {Reason}")]
    private static partial void LogRefused(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 25, Level = LogLevel.Information, Message = "Unloaded {Model} from {Host} ({Reason})")]
    private static partial void LogUnloaded(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 26, Level = LogLevel.Warning, Message = "Unloading {Model} from {Host} failed: {Reason}")]
    private static partial void LogUnloadFailed(ILogger logger, string model, string host, string reason);

    [LoggerMessage(EventId = 27, Level = LogLevel.Warning, Message = "{Model} was loaded on {Host} but is gone again ({Count} in a row); loading it again")]
    private static partial void LogVanished(ILogger logger, string model, string host, int count);

    // Once per re-send, so Debug: the request's own line (LmsProxy.Requests, with resends=N) is its one line in the log.
    [LoggerMessage(EventId = 28, Level = LogLevel.Debug, Message = "LM Studio answered that {Model} is not loaded on {Host}; loading it and re-sending")]
    private static partial void LogNotLoadedAbsorbed(ILogger logger, string model, string host);

    [LoggerMessage(EventId = 29, Level = LogLevel.Information, Message = "Every instance of {Model} is saturated: loading another on {Host}")]
    private static partial void LogSpill(ILogger logger, string model, string host);
}
