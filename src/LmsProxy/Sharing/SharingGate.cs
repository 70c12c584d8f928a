using System.Collections.Concurrent;
using System.Globalization;
using LmsProxy.Activity;
using LmsProxy.Configuration;
using LmsProxy.Keys;
using LmsProxy.Proxy;
using LmsProxy.Scheduling;

namespace LmsProxy.Sharing;

/// <summary>
/// Where a shared box's rules meet a request. Before anything is held: the key's model list (403), its daily tokens
/// and GPU time and its requests per minute (429 with Retry-After and when the limit resets), then MaxConcurrent
/// (waits, bounded by the hold deadline). Before a leased instance is forwarded to: one of its parallel slots, from
/// the instance's <see cref="SlotQueue"/>; that is where LM Studio's first-come queue is replaced by the fair one.
/// A long queue is never a 429: waiting ends only at the hold deadline (503, as for a load).
/// </summary>
internal sealed class SharingGate
{
    /// <summary>The flow of requests without a key (keys off, or an open path).</summary>
    public const string NoKeyFlow = "";

    private readonly ConcurrentDictionary<string, KeyState> _states = new(StringComparer.OrdinalIgnoreCase);
    private readonly ProxySettings _settings;
    private readonly ActivityRecorder _activity;
    private readonly TimeProvider _time;

    public SharingGate(ProxySettings settings, ActivityRecorder activity, TimeProvider time, Diagnostics.ProxyMetrics metrics)
    {
        _settings = settings;
        _activity = activity;
        _time = time;
        // /metrics by key name (never the secret): what each key has in the proxy now, and what it used today (UTC).
        metrics.Meter.CreateObservableGauge("lmsproxy.key.in_flight", () => Observe(s => s.InFlight), description: "Requests of each key forwarded to LM Studio now.");
        metrics.Meter.CreateObservableGauge("lmsproxy.key.queued", () => Observe(s => s.Queued), description: "Requests of each key waiting in the proxy for a slot or under MaxConcurrent.");
        metrics.Meter.CreateObservableGauge("lmsproxy.key.tokens_today", () => Observe(s => Today(s).Tokens), description: "Prompt and completion tokens each key used today (UTC).");
        metrics.Meter.CreateObservableGauge("lmsproxy.key.gpu_seconds_today", () => Observe(s => Today(s).GpuMs / 1000.0), unit: "s", description: "LM Studio time each key used today (UTC).");
    }

    public KeyState StateOf(string name) => _states.GetOrAdd(name, static n => new KeyState(n));

    public IEnumerable<KeyState> States => _states.Values;

    /// <summary>The key's rules before the request is held; a refusal to write, or a ticket to dispose at the end.</summary>
    public async ValueTask<(ProxyError? Refusal, KeyTicket Ticket)> AdmitAsync(HttpContext context, ModelRequest request, string? resolvedKey, LmsProxyOptions options, long deadline)
    {
        if (ApiKey.Of(context) is not { } key) return (null, default);
        if (!key.MayUse(request.RequestedModel, resolvedKey, options))
        {
            return (new ProxyError(StatusCodes.Status403Forbidden, "model_not_allowed",
                $"The key '{key.Name}' may not use '{request.RequestedModel}' (LmsProxy:Keys:{key.Name}:Models). GET /v1/models lists the models it may use."), default);
        }
        var limits = key.Options;
        var state = StateOf(key.Name);
        if (limits.TokensPerDay > 0 || limits.GpuSecondsPerDay > 0)
        {
            var now = _time.GetUtcNow();
            var used = _activity.Usage.Today(UsageTotals.ByKey, key.Name, now);
            var midnight = new DateTimeOffset(now.UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
            if (limits.TokensPerDay > 0 && used.Tokens >= limits.TokensPerDay)
            {
                return (RateLimited($"The key '{key.Name}' has used its TokensPerDay: {used.Tokens:N0} of {limits.TokensPerDay:N0} tokens today (UTC).", midnight, now), default);
            }
            if (limits.GpuSecondsPerDay > 0 && used.GpuMs >= limits.GpuSecondsPerDay * 1000)
            {
                return (RateLimited($"The key '{key.Name}' has used its GpuSecondsPerDay: {used.GpuMs / 1000.0:N1} of {limits.GpuSecondsPerDay.ToString("N1", CultureInfo.InvariantCulture)} s of LM Studio's time today (UTC).", midnight, now), default);
            }
        }
        if (limits.RequestsPerMinute > 0 && !state.TryTake(limits.RequestsPerMinute, _time.GetTimestamp(), _time.TimestampFrequency, out var retryAfter))
        {
            var now = _time.GetUtcNow();
            return (RateLimited($"The key '{key.Name}' has sent its RequestsPerMinute: {limits.RequestsPerMinute} in the last 60 s.", now + retryAfter, now), default);
        }
        if (limits.MaxConcurrent <= 0) return (null, new KeyTicket(state, null));

        var gate = state.ConcurrencyGate(limits.MaxConcurrent);
        if (gate.Wait(0)) return (null, new KeyTicket(state, gate));
        state.Waiting();
        _activity.Queued(context);
        try
        {
            if (await gate.WaitAsync(Remaining(deadline), context.RequestAborted)) return (null, new KeyTicket(state, gate));
            return (new ProxyError(StatusCodes.Status503ServiceUnavailable, "queue_timeout",
                $"The key '{key.Name}' had {limits.MaxConcurrent} requests in flight (LmsProxy:Keys:{key.Name}:MaxConcurrent) for {options.Holding.HoldTimeout.TotalSeconds:0} s (LmsProxy:HoldTimeout). Retry shortly.",
                TimeSpan.FromSeconds(5)), default);
        }
        catch (OperationCanceledException)
        {
            return (new ProxyError(499, "cancelled", "The client disconnected while waiting."), default);
        }
        finally
        {
            state.DoneWaiting();
        }
    }

    /// <summary>
    /// One of <paramref name="instance"/>'s parallel slots for the request: at once when one is free and nobody waits
    /// (one compare-and-swap), else in fair order. Null when it has one; else why not (deadline or client gone).
    /// </summary>
    public async ValueTask<Admission?> TakeSlotAsync(HttpContext context, HostedModel instance, long deadline)
    {
        var options = _settings.Current;
        var limit = SlotLimit(instance, options);
        var key = ApiKey.Of(context);
        var state = key is null ? null : StateOf(key.Name);
        if (instance.Slots.TryEnter(limit))
        {
            state?.Forwarded();
            return null;
        }
        var started = _time.GetTimestamp();
        var (flow, weight) = options.Holding.QueueOrder == QueueOrder.Arrival || key is null ? (NoKeyFlow, 1) : (key.Name, FairOrder.WeightOf(key.Priority));
        var waiter = instance.Slots.Enqueue(flow, weight, limit, options.Holding.QueueOrder == QueueOrder.Arrival ? null : state);
        state?.Waiting();
        _activity.Queued(context);
        Admission? refusal = null;
        try
        {
            await waiter.Granted.Task.WaitAsync(Remaining(deadline), _time, context.RequestAborted);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            if (instance.Slots.Abandon(waiter))
            {
                refusal = ex is TimeoutException
                    ? Admission.Refusal(AdmissionStatus.SlotTimeout, $"No slot of '{instance.ModelKey}' came free within {options.Holding.HoldTimeout.TotalSeconds:0} s (LmsProxy:HoldTimeout): {limit} in flight, {instance.Slots.Queued} waiting.")
                    : Admission.Refusal(AdmissionStatus.Cancelled, "The client disconnected while waiting.");
            }
        }
        finally
        {
            state?.DoneWaiting();
        }
        if (refusal is not null) return refusal;
        state?.Forwarded();
        if (!context.Response.HasStarted)
        {
            context.Response.Headers["X-LmsProxy-Queue-Ms"] = ((long)_time.GetElapsedTime(started).TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        }
        return null;
    }

    private (long Requests, long Tokens, long GpuMs) Today(KeyState state) => _activity.Usage.Today(UsageTotals.ByKey, state.Name, _time.GetUtcNow());

    private IEnumerable<System.Diagnostics.Metrics.Measurement<T>> Observe<T>(Func<KeyState, T> value) where T : struct =>
        _states.Values.Select(s => new System.Diagnostics.Metrics.Measurement<T>(value(s), new KeyValuePair<string, object?>("key", s.Name)));

    /// <summary>Gives the slot back (after the response's last byte, or the client left).</summary>
    public void ReleaseSlot(HttpContext context, HostedModel instance)
    {
        // The key's count first: the next waiter is chosen by how many each key has in flight, and this one is done.
        if (ApiKey.Of(context) is { } key) StateOf(key.Name).Finished();
        instance.Slots.Exit(SlotLimit(instance, _settings.Current));
    }

    /// <summary>The instance's slots: LM Studio's reported parallel, else the load setting, else LM Studio's default of 4.</summary>
    public static int SlotLimit(HostedModel instance, LmsProxyOptions options) =>
        instance.ReportedParallel ?? (options.Loading.Models.Count > 0 ? options.Loading.SettingsFor(instance.ModelKey).Parallel : null) ?? 4;

    private TimeSpan Remaining(long deadline) =>
        TimeSpan.FromSeconds(Math.Max(0, deadline - _time.GetTimestamp()) / (double)_time.TimestampFrequency);

    private static ProxyError RateLimited(string what, DateTimeOffset resets, DateTimeOffset now)
    {
        var wait = resets - now;
        var inWords = wait.TotalHours >= 1 ? $"{(int)wait.TotalHours} h {wait.Minutes} min" : wait.TotalMinutes >= 1 ? $"{(int)wait.TotalMinutes} min {wait.Seconds} s" : $"{Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds))} s";
        return new ProxyError(StatusCodes.Status429TooManyRequests, "rate_limit_exceeded",
            $"{what} It resets at {resets.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)} UTC, in {inWords}.", wait);
    }
}

/// <summary>A request's hold on its key's MaxConcurrent; disposing it gives the place back.</summary>
internal readonly struct KeyTicket(KeyState? state, SemaphoreSlim? gate) : IDisposable
{
    public KeyState? State { get; } = state;

    public void Dispose() => gate?.Release();
}
