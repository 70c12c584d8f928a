using System.Collections.Concurrent;
using System.Diagnostics;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Loading;

namespace LmsProxy.Models;

public enum EnsureStatus
{
    Ready,
    NotFound,
    LoadFailed,
    UpstreamUnavailable,
    HoldTimeout,
    QueueFull,
    Cancelled,

    /// <summary>The model's state cannot be read (LM Studio refuses the proxy's token): forward and let LM Studio answer.</summary>
    Unverified,
}

/// <summary>How a request's wait for its model ended. <see cref="Detail"/> is a client-safe sentence.</summary>
public readonly record struct EnsureResult(EnsureStatus Status, string? Detail = null, TimeSpan Held = default);

/// <summary>
/// Makes sure a model is loaded, once: concurrent callers for one model share a single load (single-flight),
/// each waits with its own deadline and cancellation, and a failed load is forgotten so the next caller retries.
/// Loads run one at a time across models: LM Studio itself duplicates or evicts when loads overlap.
/// </summary>
public sealed partial class LoadCoordinator(
    ModelRegistry registry,
    LmStudioApi api,
    LoaderSelector loaders,
    ProxySettings settings,
    ProxyMetrics metrics,
    TimeProvider time,
    ILogger<LoadCoordinator> logger)
{
    private readonly ConcurrentDictionary<string, ModelSlot> _slots = new(StringComparer.OrdinalIgnoreCase);
    private readonly SemaphoreSlim _oneLoadAtATime = new(1, 1);

    public IEnumerable<KeyValuePair<string, ModelSlot>> Slots => _slots;

    /// <summary>Holds the caller until <paramref name="model"/> is loaded, its hold deadline passes, or it disconnects.</summary>
    public async ValueTask<EnsureResult> EnsureLoadedAsync(string model, CancellationToken requestAborted)
    {
        if (registry.IsLoaded(model)) return new(EnsureStatus.Ready);

        var options = settings.Current;
        var slot = SlotFor(model);
        if (Interlocked.Increment(ref slot.Held) > options.MaxHeldPerModel)
        {
            Interlocked.Decrement(ref slot.Held);
            metrics.HoldEnded(model, "queue_full", TimeSpan.Zero);
            return new(EnsureStatus.QueueFull, $"{options.MaxHeldPerModel} requests are already waiting for '{model}' to load.");
        }
        var modelTag = metrics.Model(model);
        metrics.HeldChanged(modelTag, +1);
        var started = time.GetTimestamp();
        EnsureResult result;
        try
        {
            var outcome = await StartOrJoin(slot, model).WaitAsync(options.HoldTimeout, time, requestAborted);
            result = outcome with { Held = time.GetElapsedTime(started) };
        }
        catch (TimeoutException)
        {
            result = new(EnsureStatus.HoldTimeout, $"'{model}' did not finish loading within {options.HoldTimeout.TotalSeconds:0} s.", time.GetElapsedTime(started));
        }
        catch (OperationCanceledException) when (requestAborted.IsCancellationRequested)
        {
            result = new(EnsureStatus.Cancelled, "The client disconnected while waiting.", time.GetElapsedTime(started));
        }
        finally
        {
            Interlocked.Decrement(ref slot.Held);
            metrics.HeldChanged(modelTag, -1);
        }
        metrics.HoldEnded(model, OutcomeName(result.Status), result.Held);
        return result;
    }

    /// <summary>Starts a load in the background (preload); no-op when one is running or the model is loaded.</summary>
    public Task<EnsureResult> LoadInBackground(string model) =>
        registry.IsLoaded(model) ? Task.FromResult(new EnsureResult(EnsureStatus.Ready)) : StartOrJoin(SlotFor(model), model);

    private ModelSlot SlotFor(string model) =>
        // Requests naming one model differently ("qwen3-8b", "qwen/qwen3-8b") share the slot of its key.
        _slots.GetOrAdd(registry.Catalog.Resolve(model)?.Key ?? model, static _ => new ModelSlot());

    private Task<EnsureResult> StartOrJoin(ModelSlot slot, string model)
    {
        lock (slot)
        {
            // A finished load (success or failure) is never reused: the next caller starts afresh.
            if (slot.InFlight is { IsCompleted: false } running) return running;
            slot.InFlight = Task.Run(() => LoadAsync(slot, model));
            return slot.InFlight;
        }
    }

    private async Task<EnsureResult> LoadAsync(ModelSlot slot, string model)
    {
        try
        {
            using var timeout = new CancellationTokenSource(settings.Current.LoadTimeout, time);
            var catalog = await registry.RefreshAsync(api, timeout.Token);
            var target = catalog.Resolve(model);
            if (target is null)
            {
                Forget(slot, model);
                var available = string.Join(", ", catalog.Models.Select(m => m.Key).Order(StringComparer.Ordinal));
                return new(EnsureStatus.NotFound, $"The model '{model}' is not downloaded in LM Studio. Available models: {(available.Length > 0 ? available : "none")}.");
            }
            if (target.IsLoaded)
            {
                registry.MarkLoaded(target.Key, target.LoadedInstanceIds[0]);
                return new(EnsureStatus.Ready);
            }

            await _oneLoadAtATime.WaitAsync(timeout.Token);
            try
            {
                return await RunLoaderAsync(slot, target, timeout.Token);
            }
            finally
            {
                _oneLoadAtATime.Release();
            }
        }
        catch (UpstreamUnavailableException ex)
        {
            if (registry.Catalog.Resolve(model) is null) Forget(slot, model);
            return new(EnsureStatus.UpstreamUnavailable, ex.Message);
        }
        catch (UpstreamRefusedException ex)
        {
            LogUnverified(logger, model, ex.Message);
            return new(EnsureStatus.Unverified, ex.Message);
        }
        catch (OperationCanceledException)
        {
            return Failed(slot, model, $"Loading '{model}' did not finish within {settings.Current.LoadTimeout.TotalSeconds:0} s.");
        }
    }

    private async Task<EnsureResult> RunLoaderAsync(ModelSlot slot, CatalogModel target, CancellationToken cancellationToken)
    {
        if (registry.IsLoaded(target.Key)) return new(EnsureStatus.Ready);
        var choice = loaders.Current;
        var started = Stopwatch.GetTimestamp();
        LogLoadStarted(logger, target.Key, choice.Name);
        try
        {
            var instanceId = await choice.Loader.LoadAsync(target, settings.Current.SettingsFor(target.Key), cancellationToken);
            registry.MarkLoaded(target.Key, instanceId);
            slot.LastLoadDuration = Stopwatch.GetElapsedTime(started);
            slot.LastLoadedAt = time.GetUtcNow();
            metrics.LoadEnded(target.Key, "success", slot.LastLoadDuration.Value);
            LogLoaded(logger, target.Key, instanceId, slot.LastLoadDuration.Value.TotalMilliseconds);
            return new(EnsureStatus.Ready);
        }
        catch (Exception ex) when (ex is ModelLoadException or UpstreamUnavailableException)
        {
            metrics.LoadEnded(target.Key, "failure", Stopwatch.GetElapsedTime(started));
            return Failed(slot, target.Key, ex.Message);
        }
    }

    // Names that match nothing (typos, hostile clients) leave no slot behind.
    private void Forget(ModelSlot slot, string model) => _slots.TryRemove(new KeyValuePair<string, ModelSlot>(model, slot));

    private static string OutcomeName(EnsureStatus status) => status switch
    {
        EnsureStatus.NotFound => "not_found",
        EnsureStatus.LoadFailed => "load_failed",
        EnsureStatus.UpstreamUnavailable => "upstream_unavailable",
        EnsureStatus.HoldTimeout => "hold_timeout",
        EnsureStatus.QueueFull => "queue_full",
        _ => status.ToString().ToLowerInvariant(),
    };

    private EnsureResult Failed(ModelSlot slot, string model, string message)
    {
        slot.LastError = message;
        slot.LastErrorAt = time.GetUtcNow();
        LogLoadFailed(logger, model, message);
        return new(EnsureStatus.LoadFailed, message);
    }

    [LoggerMessage(EventId = 23, Level = LogLevel.Warning, Message = "Cannot check whether {Model} is loaded, forwarding as it is: {Reason}")]
    private static partial void LogUnverified(ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "Loading {Model} with {Loader}")]
    private static partial void LogLoadStarted(ILogger logger, string model, string loader);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "Loaded {Model} as {Identifier} in {DurationMs:0} ms")]
    private static partial void LogLoaded(ILogger logger, string model, string identifier, double durationMs);

    [LoggerMessage(EventId = 22, Level = LogLevel.Warning, Message = "Loading {Model} failed: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string model, string reason);
}

/// <summary>One model's load state, shared by everyone waiting for it.</summary>
public sealed class ModelSlot
{
    public Task<EnsureResult>? InFlight;
    public int Held;

    /// <summary>A load (with its checks before and after) is under way.</summary>
    public bool Loading => InFlight is { IsCompleted: false };
    public TimeSpan? LastLoadDuration;
    public DateTimeOffset? LastLoadedAt;
    public string? LastError;
    public DateTimeOffset? LastErrorAt;
}
