using System.Collections.Concurrent;
using LmsProxy.Diagnostics;
using LmsProxy.Proxy;
using LmsProxy.Scheduling;
using LmsProxy.Storage;

namespace LmsProxy.Activity;

/// <summary>
/// Keeps the record of each request: begun when it arrives, moved through its states by the proxy, finished when its
/// last byte is out (or it was refused, failed, or cancelled). In flight: a dictionary; finished: a ring in memory
/// and the store (written off the request path). The warm path pays a record, a body tap and a linked cancellation
/// source per request, no lock held for more than a few instructions and no I/O.
/// </summary>
internal sealed partial class ActivityRecorder : IDisposable
{
    private readonly ActivityOptions _options;
    private readonly ProxyMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly StateStore _store;
    private readonly UsageTotals _usage;
    private readonly ConcurrentDictionary<long, ActivityRecord> _live = new();
    private readonly ActivityRecord?[] _recent;
    private readonly Lock _recentLock = new();
    private readonly ConcurrentDictionary<string, long> _loadingSince = new(StringComparer.OrdinalIgnoreCase);
    private readonly CapacityEvents _events;
    private int _recentNext;
    private long _nextId;

    public ActivityRecorder(ActivityOptions options, ProxyMetrics metrics, CapacityEvents events, StateStore store, TimeProvider time)
    {
        _options = options;
        _metrics = metrics;
        _time = time;
        _store = store;
        _events = events;
        _recent = new ActivityRecord?[Math.Max(16, options.Recent)];
        _nextId = store.LastActivityId();
        _usage = new UsageTotals(store);
        events.Added += OnCapacityEvent;
        events.LoadStarted += OnLoadStarted;
    }

    public bool Enabled => _options.Enabled;

    public UsageTotals Usage => _usage;

    /// <summary>
    /// The record of the request on <paramref name="context"/>, if it has one: found through its response tap (no
    /// feature of its own: an extra feature costs Kestrel a list per request). The proxy's other body wrapper
    /// (ResponseIdCapture) is in place only during YARP's forward, when nothing here is called.
    /// </summary>
    public static ActivityRecord? Of(HttpContext context) => (context.Response.Body as ResponseTap)?.Record;

    /// <summary>
    /// Starts the record: the response body passes through a tap from now on, and the request gets its own
    /// cancellation (the operator's cancel aborts the upstream request through it). Finished by <see cref="End"/>, or
    /// by <see cref="Finished"/> in the handler's finally (the warm path's success needs no other call).
    /// </summary>
    public ActivityRecord? Begin(HttpContext context, long started, ModelRequest? request)
    {
        if (!_options.Enabled) return null;
        var record = new ActivityRecord
        {
            Id = Interlocked.Increment(ref _nextId),
            StartedAt = _time.GetUtcNow().UtcDateTime,
            StartTimestamp = started,
            Endpoint = context.Request.Path.Value ?? "",
            Method = context.Request.Method,
            Key = Keys.ApiKey.Of(context)?.Name, // the key's name, never the secret
            ClientAddress = context.Connection.RemoteIpAddress,
            BytesIn = request?.Length ?? context.Request.ContentLength ?? 0,
            State = ActivityState.Queued,
            Context = context,
        };
        var captureLimit = _options.Capture == CaptureMode.None ? 0 : _options.CaptureLimitBytes;
        var tap = new ResponseTap(context.Response.Body, context.Response, record, _time, captureLimit);
        record.Tap = tap;
        context.Response.Body = tap;
        record.OriginalAborted = context.RequestAborted;
        record.Cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        context.RequestAborted = record.Cancel.Token;
        _live[record.Id] = record;
        Changed(record);
        return record;
    }

    /// <summary>What was asked for, once the body is read.</summary>
    public void Requested(HttpContext context, ModelRequest request, string? resolved)
    {
        if (Of(context) is not { } record) return;
        record.Model = request.RequestedModel;
        record.ResolvedModel = resolved ?? request.Model;
        record.BytesIn = request.Length;
        if (_options.Capture != CaptureMode.None) record.RequestBody = Excerpt(request.Body.Span);
    }

    /// <summary>The request waits in the proxy (for room, a load, a slot).</summary>
    public void Queued(HttpContext context)
    {
        if (Of(context) is not { } record) return;
        var now = _time.GetTimestamp();
        if (record.LoadWaitStarted == 0) record.LoadWaitStarted = now;
        record.State = record.ResolvedModel is { } model && _loadingSince.ContainsKey(model) ? ActivityState.Loading : ActivityState.Queued;
        Changed(record);
    }

    /// <summary>The request goes to <paramref name="host"/>.</summary>
    public void Forwarding(HttpContext context, string host)
    {
        if (Of(context) is not { } record) return;
        record.Host = host;
        record.ForwardTimestamp = _time.GetTimestamp();
        record.LoadWaitStarted = 0;
        record.State = ActivityState.Forwarding;
        Changed(record);
    }

    /// <summary>The proxy's outcome for the request (its metric's label), and how long it was held.</summary>
    public void End(HttpContext context, string? host, string outcome, TimeSpan held)
    {
        if (Of(context) is not { } record) return;
        if (host is not null) record.Host ??= host;
        record.HeldMs = (long)held.TotalMilliseconds;
        record.Error = outcome is "forwarded" or "cancelled" ? null : outcome;
        Finish(record, context);
    }

    /// <summary>The request is over, however it ended: its record, if still open, is finished now (once only).</summary>
    public void Finished(HttpContext context)
    {
        if (Of(context) is { } record) Finish(record, context);
    }

    /// <summary>
    /// After an operator's cancel, the error the client gets, when the tap has not already written it into a stream;
    /// the request's own cancellation is put back so that the error can still be written.
    /// </summary>
    public static ProxyError? CancelledByOperator(HttpContext context)
    {
        if (Of(context) is not { OperatorCancelled: not 0 } record) return null;
        context.RequestAborted = record.OriginalAborted;
        return record.Tap?.Interrupted == true ? null : CancelError;
    }

    /// <summary>410: SDKs do not retry it (they retry 408, 409, 429 and 5xx), which would undo the cancel.</summary>
    public static readonly ProxyError CancelError = new(StatusCodes.Status410Gone, "cancelled_by_operator", "An operator cancelled this request (POST /activity/{id}/cancel).");

    /// <summary>
    /// An operator's cancel: a stream that has started gets the protocol's error event, written by the tap; then the
    /// request's cancellation aborts the upstream request (and a wait in the proxy). False when no such request is in flight.
    /// </summary>
    public async Task<bool> CancelAsync(long id)
    {
        if (!_live.TryGetValue(id, out var record) || record.State == ActivityState.Done) return false;
        if (Interlocked.Exchange(ref record.OperatorCancelled, 1) != 0) return true;
        record.Cancelled = true;
        var context = record.Context;
        if (context is not null && record.Tap is { } tap && context.Response.HasStarted && tap.EventStream)
        {
            var text = StreamKeepAlive.ErrorEvent(StreamProtocols.Of(context.Request.Path), CancelError);
            await tap.InterruptAsync(System.Text.Encoding.UTF8.GetBytes(text), record.OriginalAborted);
            // Give the event a moment to leave the socket: cancelling makes YARP abort the client's connection.
            await Task.Delay(TimeSpan.FromMilliseconds(50), _time);
        }
        try
        {
            record.Cancel?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Finished meanwhile.
        }
        return true;
    }

    internal void Finish(ActivityRecord record, HttpContext? context)
    {
        // Once only: End from the handler, or the response's disposal.
        if (!_live.TryRemove(record.Id, out _)) return;
        var now = _time.GetTimestamp();
        var tap = record.Tap;
        if (context is not null)
        {
            record.Status = context.Response.StatusCode;
            if (record.OriginalAborted.IsCancellationRequested) record.Cancelled = true;
            context.RequestAborted = record.OriginalAborted;
        }
        record.DurationMs = Ms(record.StartTimestamp, now);
        // The body goes back last: Of() finds the record through it until here.
        if (context is not null && tap is not null && ReferenceEquals(context.Response.Body, tap)) context.Response.Body = tap.Inner;
        if (record.ForwardTimestamp != 0) record.GpuMs = Ms(record.ForwardTimestamp, now);
        if (tap is not null) Tokens(record, tap, now);
        record.State = ActivityState.Done;
        record.Context = null;
        record.Tap = null;
        record.Cancel?.Dispose();
        record.Cancel = null;
        if (_options.Capture == CaptureMode.Failed && !(record.Status >= 400 || record.Error is not null || record.Cancelled))
        {
            record.RequestBody = null;
            record.ResponseBody = null;
        }

        var model = record.ResolvedModel ?? ProxyMetrics.NoModel;
        var host = record.Host ?? "-";
        if (record.ResolvedModel is not null) _metrics.RequestRecorded(model, host, record.HeldMs, record.TtftMs, record.PromptTokens, record.CompletionTokens);
        _usage.Add(record);
        lock (_recentLock)
        {
            _recent[_recentNext] = record;
            _recentNext = (_recentNext + 1) % _recent.Length;
        }
        _store.Append(record);
        Changed(record);
    }

    private static void Tokens(ActivityRecord record, ResponseTap tap, long now)
    {
        tap.Complete(now);
        var scanner = tap.Scanner;
        var first = tap.EventStream ? scanner.FirstContentTimestamp : tap.FirstByteTimestamp;
        if (first != 0) record.TtftMs = Ms(record.StartTimestamp, first);
        record.PromptTokens = scanner.PromptTokens;
        record.CompletionTokens = scanner.CompletionTokens;
        if (record.CompletionTokens is null && tap.EventStream && scanner.ContentEvents > 0)
        {
            record.CompletionTokens = scanner.ContentEvents;
            record.TokensEstimated = true;
        }
        if (record.CompletionTokens is not { } completion || completion <= 0) return;
        // A stream: over the time after its first token. A whole body: LM Studio's own figure when it gives one,
        // else over the time from forwarding to the first byte (prompt processing included).
        var seconds = tap.EventStream
            ? (first == 0 ? 0 : Seconds(first, now))
            : record.ForwardTimestamp == 0 || first == 0 ? 0 : Seconds(record.ForwardTimestamp, first);
        record.TokensPerSecond = !tap.EventStream && scanner.TokensPerSecond is { } reported ? Math.Round(reported, 2)
            : seconds > 0.001 ? Math.Round(completion / seconds, 2) : null;
    }

    private static long Ms(long from, long to) => (long)((to - from) * 1000.0 / System.Diagnostics.Stopwatch.Frequency);

    private static double Seconds(long from, long to) => (to - from) / (double)System.Diagnostics.Stopwatch.Frequency;

    private string Excerpt(ReadOnlySpan<byte> body) =>
        System.Text.Encoding.UTF8.GetString(body[..Math.Min(body.Length, _options.CaptureLimitBytes)]);

    private void OnLoadStarted(string host, string model)
    {
        _loadingSince[model] = _time.GetTimestamp();
        foreach (var record in _live.Values)
        {
            if (record.State == ActivityState.Queued && string.Equals(record.ResolvedModel, model, StringComparison.OrdinalIgnoreCase))
            {
                record.State = ActivityState.Loading;
                Changed(record);
            }
        }
    }

    /// <summary>A load ended (done, refused, failed): the requests that waited for it count the part of their wait it took.</summary>
    private void OnCapacityEvent(CapacityEvent e)
    {
        if (e.Kind is not ("load" or "refusal" or "failure")) return;
        if (!_loadingSince.TryRemove(e.Model, out var since)) return;
        var now = _time.GetTimestamp();
        foreach (var record in _live.Values)
        {
            if (record.LoadWaitStarted == 0 || !string.Equals(record.ResolvedModel, e.Model, StringComparison.OrdinalIgnoreCase)) continue;
            record.LoadMs += Ms(Math.Max(since, record.LoadWaitStarted), now);
            if (record.State == ActivityState.Loading) record.State = ActivityState.Queued;
            Changed(record);
        }
    }

    public void Dispose()
    {
        _events.Added -= OnCapacityEvent;
        _events.LoadStarted -= OnLoadStarted;
    }
}
