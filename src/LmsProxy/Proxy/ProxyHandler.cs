using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using LmsProxy.Activity;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Hosts;
using LmsProxy.Scheduling;
using Polly;
using Polly.Retry;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>
/// The way of a proxied request. Inference requests: read the model, take a warm instance (no lock, no I/O) or wait
/// for the scheduler to make one ready, forward with YARP, and re-send while LM Studio still says "not loaded", cuts
/// the request off, or a host cannot be reached, as long as nothing reached the client and the hold deadline allows.
/// Every re-send goes through the scheduler after a short jittered pause. Everything else is forwarded as it is.
/// YARP's direct forwarder is used because only it can send one request twice. (The forward into a stream that
/// keep-alives started is in ProxyHandler.StartedStream.cs; client load/unload routing in ModelControl.cs.)
/// </summary>
internal sealed partial class ProxyHandler
{
    /// <summary>Re-sends of one request at most, whatever its deadline (each one goes through the scheduler again).</summary>
    public const int MaxResends = 40;

    /// <summary>Times LM Studio may close one request's connection before answering, the model staying loaded, before the client is told.</summary>
    public const int CutOffsTolerated = 3;

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _invoker;
    private readonly ProxySettings _settings;
    private readonly Scheduler _scheduler;
    private readonly HostCluster _cluster;
    private readonly ConversationAffinity _affinity;
    private readonly ProxyMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly HeldBodyBudget _heldBodies;
    private readonly ActivityRecorder _activity;
    private readonly ResiliencePipeline<Attempt> _resend;
    private readonly ConditionalWeakTable<LmStudioHost, HostTransformers> _transformers = [];
    private (LmsProxyOptions Options, ForwarderRequestConfig Config) _requestConfig;

    public ProxyHandler(IHttpForwarder forwarder, UpstreamInvoker invoker, ProxySettings settings, Scheduler scheduler, HostCluster cluster,
        ConversationAffinity affinity, ProxyMetrics metrics, TimeProvider time, ILoggerFactory loggerFactory, HeldBodyBudget heldBodies,
        ActivityRecorder activity)
    {
        _heldBodies = heldBodies;
        _activity = activity;
        _time = time;
        _forwarder = forwarder;
        _invoker = invoker.Invoker;
        _settings = settings;
        _scheduler = scheduler;
        _cluster = cluster;
        _affinity = affinity;
        _metrics = metrics;
        _logger = loggerFactory.CreateLogger("LmsProxy.Requests");
        // A jittered pause between tries (25 ms doubling to 1 s): an LM Studio that fails fast is not hammered, and a
        // burst of re-sends spreads out. The hold deadline (checked first in each try) and MaxResends bound them.
        _resend = new ResiliencePipelineBuilder<Attempt> { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions<Attempt>
            {
                MaxRetryAttempts = MaxResends,
                Delay = TimeSpan.FromMilliseconds(25),
                MaxDelay = TimeSpan.FromSeconds(1),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { Kind: AttemptKind.NotLoaded or AttemptKind.Unreachable or AttemptKind.CutOff }),
            })
            .Build();
    }

    public async Task HandleAsync(HttpContext context)
    {
        var options = _settings.Current;
        var kind = RequestPaths.Classify(context.Request);
        if (kind == RequestKind.Inference)
        {
            await HandleModelRequestAsync(context, options);
            return;
        }
        if (kind == RequestKind.ModelLookup)
        {
            await ModelLookup.AnswerAsync(context, _scheduler, options);
            return;
        }
        if (kind == RequestKind.CountTokens)
        {
            await TokenCounter.AnswerAsync(context, options);
            return;
        }

        var host = _scheduler.DefaultHost();
        if (kind == RequestKind.ModelControl)
        {
            host = await ModelControl.ChooseHostAsync(context, _scheduler, options);
            if (host is null) return; // answered: no host, or several could
        }
        if (host is null)
        {
            await new ProxyError(StatusCodes.Status502BadGateway, "upstream_unavailable", "No LM Studio host is configured.").WriteAsync(context);
            return;
        }
        // The activity record: inference requests always; other requests to a path LM Studio knows.
        if (context.Request.Headers.Upgrade.Count == 0 && kind is RequestKind.Known or RequestKind.ModelList or RequestKind.ModelControl) _activity.Begin(context, _time.GetTimestamp(), null);
        var transformers = TransformersFor(host);
        HttpTransformer transformer = kind == RequestKind.ModelList
            ? new ModelListTransformer(transformers.PassThrough, await CurrentCatalogAsync(context.RequestAborted), options)
            : kind is RequestKind.Known or RequestKind.ModelControl || context.Request.Headers.Upgrade.Count > 0 ? transformers.PassThrough : transformers.UnknownPath;
        if (_scheduler.SeveralHosts) context.Response.Headers["X-LmsProxy-Host"] = host.Name;
        var error = await _forwarder.SendAsync(context, host.Prefix, _invoker, RequestConfig(options), transformer);
        // A client's own load or unload changed what the host holds: the scheduler reads its list now.
        if (kind == RequestKind.ModelControl) _ = _scheduler.RefreshAsync(host, CancellationToken.None);
        await FinishAsync(context, null, new Attempt(AttemptKind.Forwarded, host, Error: error), TimeSpan.Zero, _time.GetTimestamp(), warm: true);
    }

    private async Task HandleModelRequestAsync(HttpContext context, LmsProxyOptions options)
    {
        var started = _time.GetTimestamp();
        _activity.Begin(context, started, null); // the record, its response tap, the request's own cancellation
        var (request, problem) = await ModelRequestReader.ReadAsync(context.Request, options, _heldBodies, context.RequestAborted, _scheduler);
        if (problem is not null)
        {
            await problem.WriteAsync(context);
            Record(context, null, null, "bad_request", TimeSpan.Zero, started, warm: false);
            return;
        }
        _activity.Requested(context, request!, _scheduler.Catalog.Resolve(request!.Model)?.Key);
        using (request)
        {
            // Every forward, whichever path it takes, sends the body the proxy holds (an alias may have changed its length).
            context.Request.ContentLength = request!.Length;
            if (context.Request.Headers.TransferEncoding.Count > 0) context.Request.Headers.TransferEncoding = default;
            var pin = request.PreviousResponseId is { } previous ? _affinity.HostOf(previous) : null;
            var last = default(Attempt);

            // The warm path: a ready instance, leased without a lock; most requests end here.
            if (_scheduler.TryWarm(request.Model, pin) is { } warm)
            {
                var first = await ForwardLeasedAsync(context, request, warm);
                if (first is { Kind: AttemptKind.Forwarded, Error: ForwarderError.None })
                {
                    Interlocked.Increment(ref warm.Forwarded.Value);
                    if (_logger.IsEnabled(LogLevel.Debug)) Log(context, request, TimeSpan.Zero, started, warm: true, 0);
                    return;
                }
                if (first.Kind is AttemptKind.Forwarded or AttemptKind.Failed)
                {
                    await FinishAsync(context, request, first, TimeSpan.Zero, started, warm: false);
                    return;
                }
                last = first;
            }

            var deadline = started + (long)(options.HoldTimeout.TotalSeconds * _time.TimestampFrequency);
            await using var keepAlive = StreamKeepAlive.For(context, request, options, _time);
            var state = new RequestState(this, context, request, pin, deadline, keepAlive) { Last = last };
            var attempt = await _resend.ExecuteAsync(static (s, _) => s.Handler.AttemptAsync(s), state, context.RequestAborted);
            await FinishAsync(context, request, attempt, state.Held, started, warm: false, keepAlive, state.Resends);
        }
    }

    /// <summary>One try: deal with what the last try said (stored in the state), check the deadline, wait for a ready instance, forward.</summary>
    private async ValueTask<Attempt> AttemptAsync(RequestState state)
    {
        if (state.Last.Kind != AttemptKind.None)
        {
            state.Resends++;
            if (await AfterFailureAsync(state) is { } refusal) return state.Last = new(AttemptKind.Refused, Refusal: refusal);
            if (_time.GetTimestamp() >= state.Deadline)
            {
                return state.Last = new(AttemptKind.Refused, Refusal: Admission.Refused(AdmissionStatus.HoldTimeout,
                    $"'{state.Request.RequestedModel}' could not be served within {_settings.Current.HoldTimeout.TotalSeconds:0} s (LmsProxy:HoldTimeout): LM Studio kept failing it ({state.Last.Kind})."));
            }
        }
        return state.Last = await AdmitAndForwardAsync(state);
    }

    /// <summary>What the failed try means for the next one; a refusal when there should be none.</summary>
    private async ValueTask<Admission?> AfterFailureAsync(RequestState state)
    {
        var aborted = state.Context.RequestAborted;
        switch (state.Last)
        {
            case { Kind: AttemptKind.NotLoaded, Instance: { } instance }:
                return await _scheduler.ReportNotLoadedAsync(instance, aborted);
            case { Kind: AttemptKind.CutOff } cutOff:
                // Evicted under the request: it waits for a reload. Still loaded: the request itself is the trouble.
                if (cutOff.Instance is { } cut && !await _scheduler.ReportCutOffAsync(cut, aborted)) return null;
                if (++state.CutOffs < CutOffsTolerated) return null;
                return Admission.Refused(AdmissionStatus.UpstreamAborted,
                    $"LM Studio at {cutOff.Host?.Url} closed the connection before answering, {state.CutOffs} times, with '{state.Request.Model}' still loaded. " +
                    "The request may be larger than LM Studio accepts, or make it crash; LM Studio's own log says which.");
            case { Kind: AttemptKind.Unreachable, Host: { } unreachable }:
                _cluster.ReportUnreachable(unreachable);
                state.Unreachable.Add(unreachable);
                return state.Pin is not null ? Scheduler.ConversationHostDown(state.Pin) : null;
            default:
                return null;
        }
    }

    private async ValueTask<Attempt> AdmitAndForwardAsync(RequestState state)
    {
        _activity.Queued(state.Context);
        var admission = await _scheduler.AdmitAsync(state.Request.Model, state.Pin, state.Deadline, state.Context.RequestAborted);
        state.Held += admission.Held;
        if (state.KeepAlive is not { } keepAlive) return await ForwardAdmittedAsync(state, admission);

        // No keep-alive is written between here and the end of this forward; they go on if the request waits again.
        try
        {
            await keepAlive.HoldAsync();
        }
        catch (OperationCanceledException)
        {
            if (admission.Instance is { } taken) _scheduler.Release(taken);
            return new(AttemptKind.Refused, Refusal: Admission.Refused(AdmissionStatus.Cancelled, "The client disconnected while waiting."));
        }
        var attempt = await ForwardAdmittedAsync(state, admission);
        keepAlive.Release(final: attempt.Kind is not (AttemptKind.NotLoaded or AttemptKind.Unreachable or AttemptKind.CutOff));
        return attempt;
    }

    private async ValueTask<Attempt> ForwardAdmittedAsync(RequestState state, Admission admission)
    {
        var (context, request) = (state.Context, state.Request);
        if (!admission.CanForward) return new(AttemptKind.Refused, admission.Host, Refusal: admission);
        if (state.Unreachable.Contains(admission.Host!))
        {
            // Placement had nowhere else: the host that just failed is the only one that can serve this model.
            if (admission.Instance is { } taken) _scheduler.Release(taken);
            return new(AttemptKind.Refused, admission.Host, Refusal: Admission.Refused(AdmissionStatus.UpstreamUnavailable,
                $"LM Studio at {admission.Host!.Url} is not reachable, and no other host can serve '{request.Model}'. {Loading.LmStudioApi.StartHint}"));
        }
        var started = state.KeepAlive?.Committed == true;
        if (state.Held > TimeSpan.Zero && !started)
        {
            context.Response.Headers["X-LmsProxy-Hold-Ms"] = ((long)state.Held.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        }
        if (admission.Instance is not { } leased)
        {
            // LM Studio refuses the proxy's own calls: the request goes as it is and LM Studio answers.
            return started
                ? await ForwardIntoStartedStreamAsync(state, admission.Host!, null)
                : await ForwardAsync(context, request, admission.Host!, null, TransformMode.PassThrough);
        }
        return await ForwardLeasedAsync(context, request, leased, started ? state : null);
    }

    /// <summary>
    /// Forwards on a lease (into the keep-alive's stream when <paramref name="startedStream"/> is given), and gives the
    /// lease back when the response is done or the client left.
    /// </summary>
    private async ValueTask<Attempt> ForwardLeasedAsync(HttpContext context, ModelRequest request, Instance leased, RequestState? startedStream = null)
    {
        try
        {
            var attempt = startedStream is not null
                ? await ForwardIntoStartedStreamAsync(startedStream, leased.Host, leased)
                : await ForwardAsync(context, request, leased.Host, leased, TransformMode.Inference);
            if (attempt.Kind == AttemptKind.Forwarded && attempt.Error == ForwarderError.None) Scheduler.ForwardSucceeded(leased);
            return attempt;
        }
        finally
        {
            _scheduler.Release(leased);
        }
    }

    private async ValueTask<Attempt> ForwardAsync(HttpContext context, ModelRequest request, LmStudioHost host, Instance? instance, TransformMode mode)
    {
        _activity.Forwarding(context, host.Name);
        context.Request.Body = request.OpenBody();
        if (_scheduler.SeveralHosts) context.Response.Headers["X-LmsProxy-Host"] = host.Name;

        var transformers = TransformersFor(host);
        var transformer = mode == TransformMode.Inference ? transformers.Inference : transformers.PassThrough;
        var options = _settings.Current;
        ForwarderError error;
        using (CaptureResponseIds(context, host))
        {
            error = await _forwarder.SendAsync(context, host.Prefix, _invoker, RequestConfig(options), transformer);
        }

        if (context.Features.Get<ForwardSignal>() is not null)
        {
            // LM Studio evicted the model, or JIT did not load it; nothing reached the client.
            context.Features.Set<ForwardSignal>(null);
            context.Response.Clear();
            return new(AttemptKind.NotLoaded, host, instance);
        }
        if (error is ForwarderError.Request or ForwarderError.RequestTimedOut && !context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            var kind = ForwardFailure.Classify(context.Features.Get<IForwarderErrorFeature>()?.Exception);
            // A time-out that is not the connect's is LM Studio's silence (ActivityTimeout): answered as it is.
            if (kind != FailureKind.Failed || error == ForwarderError.Request)
            {
                context.Response.Clear();
                return new(AttemptOf(kind), host, instance, error);
            }
        }
        return new(AttemptKind.Forwarded, host, instance, error);
    }

    private static AttemptKind AttemptOf(FailureKind kind) => kind switch
    {
        FailureKind.Unreachable => AttemptKind.Unreachable,
        FailureKind.CutOff => AttemptKind.CutOff,
        _ => AttemptKind.Failed,
    };

    /// <summary>With several hosts, a stateful answer's id is noted on its way through: the next turn must come back here.</summary>
    private ResponseBodySwap CaptureResponseIds(HttpContext context, LmStudioHost host)
    {
        if (!_scheduler.SeveralHosts) return default;
        var body = context.Response.Body;
        var capture = ResponseIdCapture.For(context.Request, body, id => _affinity.Record(id, host));
        if (capture is null) return default;
        context.Response.Body = capture;
        return new ResponseBodySwap(context, body);
    }

    private readonly struct ResponseBodySwap(HttpContext? context, Stream? original) : IDisposable
    {
        public void Dispose()
        {
            if (context is not null) context.Response.Body = original!;
        }
    }

    private async Task FinishAsync(HttpContext context, ModelRequest? request, Attempt attempt, TimeSpan held, long started, bool warm, StreamKeepAlive? keepAlive = null, int resends = 0)
    {
        var (outcome, error) = attempt.Kind switch
        {
            AttemptKind.Refused => RefusalError(request!.RequestedModel, attempt.Refusal),
            AttemptKind.Forwarded => ForwarderFailure(context, attempt.Host, attempt.Error, keepAlive),
            _ => UnfinishedError(context, attempt),
        };
        error ??= ActivityRecorder.CancelledByOperator(context); // an operator's cancel: the client gets an error in its protocol's shape
        if (error is not null)
        {
            if (keepAlive?.Committed == true)
            {
                // The 200 went out with the keep-alives: the error travels in the stream, in its protocol's shape.
                await keepAlive.HoldAsync();
                await keepAlive.WriteErrorAsync(error);
                keepAlive.Release(final: true);
            }
            else
            {
                await error.WriteAsync(context);
            }
        }
        Record(context, request, attempt.Host ?? attempt.Refusal.Host, outcome, held, started, warm, resends);
    }

    /// <summary>The request's metric and its one log line (on the warm path, only at Debug level).</summary>
    private void Record(HttpContext context, ModelRequest? request, LmStudioHost? host, string outcome, TimeSpan held, long started, bool warm, int resends = 0)
    {
        _activity.End(context, host?.Name, outcome, held);
        if (request is not null || outcome != "forwarded")
        {
            var model = request is not null && _scheduler.Catalog.Resolve(request.Model) is { } known ? known.Key : ProxyMetrics.NoModel;
            _metrics.RequestEnded(model, host?.Name ?? "-", outcome);
        }
        if (!warm || _logger.IsEnabled(LogLevel.Debug) || context.Response.StatusCode >= 500) Log(context, request, held, started, warm, resends);
    }

    private void Log(HttpContext context, ModelRequest? request, TimeSpan held, long started, bool warm, int resends)
    {
        // PathString converts to its escaped form: a %0A in the path cannot forge a log line (tested).
        var level = warm && context.Response.StatusCode < 500 ? LogLevel.Debug : LogLevel.Information;
        LogRequest(_logger, level, context.Request.Method, context.Request.Path, request?.RequestedModel ?? "-", context.Response.StatusCode,
            (long)held.TotalMilliseconds, _time.GetElapsedTime(started).TotalMilliseconds, resends);
    }

    private static (string Outcome, ProxyError? Error) RefusalError(string model, Admission refusal) => refusal.Status switch
    {
        AdmissionStatus.NotFound => ("not_found", new(StatusCodes.Status404NotFound, "model_not_found", refusal.Detail!)),
        AdmissionStatus.LoadFailed => ("load_failed", new(StatusCodes.Status503ServiceUnavailable, "model_load_failed", $"Loading '{model}' failed: {refusal.Detail}", TimeSpan.FromSeconds(5))),
        AdmissionStatus.UpstreamUnavailable => ("upstream_unavailable", new(StatusCodes.Status502BadGateway, "upstream_unavailable", refusal.Detail!)),
        AdmissionStatus.HoldTimeout => ("hold_timeout", new(StatusCodes.Status503ServiceUnavailable, "model_loading", refusal.Detail! + " Retry shortly.", TimeSpan.FromSeconds(10))),
        AdmissionStatus.QueueFull => ("queue_full", new(StatusCodes.Status503ServiceUnavailable, "too_many_waiting", refusal.Detail! + " Retry shortly.", TimeSpan.FromSeconds(5))),
        AdmissionStatus.TooLarge => ("too_large", new(StatusCodes.Status503ServiceUnavailable, "model_too_large", $"'{model}' cannot be loaded: {refusal.Detail}")),
        AdmissionStatus.ConversationHostDown => ("conversation_host_down", new(StatusCodes.Status503ServiceUnavailable, "conversation_host_unavailable", refusal.Detail!, TimeSpan.FromSeconds(10))),
        AdmissionStatus.Inconsistent => ("inconsistent", new(StatusCodes.Status503ServiceUnavailable, "lmstudio_inconsistent", refusal.Detail!, TimeSpan.FromSeconds(10))),
        AdmissionStatus.ShuttingDown => ("shutting_down", new(StatusCodes.Status503ServiceUnavailable, "shutting_down", refusal.Detail!, TimeSpan.FromSeconds(5))),
        AdmissionStatus.UpstreamAborted => ("upstream_aborted", new(StatusCodes.Status502BadGateway, "upstream_aborted", refusal.Detail!)),
        _ => ("cancelled", null),
    };

    /// <summary>The re-sends ran out (MaxResends) with LM Studio still failing, or the proxy's own request failed.</summary>
    private (string Outcome, ProxyError? Error) UnfinishedError(HttpContext context, Attempt attempt)
    {
        if (context.RequestAborted.IsCancellationRequested) return ("cancelled", null);
        var upstream = attempt.Host?.Url.ToString() ?? "(no host)";
        var detail = Loading.Excerpt.Of(context.Features.Get<IForwarderErrorFeature>()?.Exception?.Message, 300);
        return attempt.Kind switch
        {
            AttemptKind.Unreachable => ("upstream_unavailable", new(StatusCodes.Status502BadGateway, "upstream_unavailable",
                $"LM Studio at {upstream} is not reachable. {Loading.LmStudioApi.StartHint}")),
            AttemptKind.CutOff => ("upstream_aborted", new(StatusCodes.Status502BadGateway, "upstream_aborted",
                $"LM Studio at {upstream} closed the connection before answering, {MaxResends} times.")),
            AttemptKind.NotLoaded => ("not_loaded", new(StatusCodes.Status503ServiceUnavailable, "model_loading",
                $"LM Studio at {upstream} kept answering that the model is not loaded ({MaxResends} tries). Retry shortly.", TimeSpan.FromSeconds(10))),
            _ => ("upstream_error", new(StatusCodes.Status502BadGateway, "upstream_error", $"Forwarding to LM Studio at {upstream} failed: {detail}")),
        };
    }

    private (string Outcome, ProxyError? Error) ForwarderFailure(HttpContext context, LmStudioHost? host, ForwarderError error, StreamKeepAlive? keepAlive)
    {
        if (error == ForwarderError.None) return ("forwarded", null);
        if (context.RequestAborted.IsCancellationRequested || error is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled) return ("cancelled", null);
        if (context.Response.HasStarted && keepAlive?.Committed != true) return ("upstream_aborted", null);

        var upstream = host?.Url.ToString() ?? "(no host)";
        var detail = context.Features.Get<IForwarderErrorFeature>()?.Exception?.Message;
        return error switch
        {
            ForwarderError.RequestTimedOut => ("upstream_timeout", new(StatusCodes.Status504GatewayTimeout, "upstream_timeout",
                $"LM Studio at {upstream} sent nothing for {_settings.Current.ActivityTimeout.TotalSeconds:0} s (LmsProxy:ActivityTimeout).")),
            ForwarderError.Request => ("upstream_unavailable", new(StatusCodes.Status502BadGateway, "upstream_unavailable",
                $"LM Studio at {upstream} is not reachable: {detail ?? "connection failed"}. {Loading.LmStudioApi.StartHint}")),
            ForwarderError.RequestBodyClient => ("bad_request", ProxyError.BadRequest("request_body_error", $"The request body could not be read: {detail}")),
            _ => ("upstream_error", new(StatusCodes.Status502BadGateway, "upstream_error", $"Forwarding to LM Studio at {upstream} failed ({error}): {detail}")),
        };
    }

    private async Task<Models.ModelCatalog> CurrentCatalogAsync(CancellationToken cancellationToken)
    {
        await _scheduler.RefreshAllAsync(cancellationToken);
        return _scheduler.Catalog;
    }

    private HostTransformers TransformersFor(LmStudioHost host) =>
        _transformers.GetValue(host, h => new HostTransformers(
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.PassThrough, h.Name), // the host name, for auth errors (F16)
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.Inference, h.Name),
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.UnknownPath, h.Name)));

    private ForwarderRequestConfig RequestConfig(LmsProxyOptions options)
    {
        var cached = _requestConfig;
        if (ReferenceEquals(cached.Options, options)) return cached.Config;
        var config = new ForwarderRequestConfig { ActivityTimeout = options.ActivityTimeout, Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionOrLower };
        _requestConfig = (options, config);
        return config;
    }

    private sealed record HostTransformers(HttpTransformer PassThrough, HttpTransformer Inference, HttpTransformer UnknownPath);

    private enum AttemptKind
    {
        /// <summary>No try yet.</summary>
        None,
        Forwarded,
        Refused,
        NotLoaded,
        Unreachable,
        CutOff,

        /// <summary>The forward failed for a reason a re-send cannot fix (see <see cref="FailureKind.Failed"/>).</summary>
        Failed,
    }

    private readonly record struct Attempt(AttemptKind Kind, LmStudioHost? Host = null, Instance? Instance = null, ForwarderError Error = ForwarderError.None, Admission Refusal = default);

    private sealed class RequestState(ProxyHandler handler, HttpContext context, ModelRequest request, LmStudioHost? pin, long deadline, StreamKeepAlive? keepAlive)
    {
        public StreamKeepAlive? KeepAlive { get; } = keepAlive;
        public ProxyHandler Handler { get; } = handler;
        public HttpContext Context { get; } = context;
        public ModelRequest Request { get; } = request;
        public LmStudioHost? Pin { get; } = pin;
        public long Deadline { get; } = deadline;
        public TimeSpan Held { get; set; }

        /// <summary>What the previous try came to; the next try acts on it.</summary>
        public Attempt Last { get; set; }

        public int Resends { get; set; }
        public int CutOffs { get; set; }
        public HashSet<LmStudioHost> Unreachable { get; } = [];
    }

    [LoggerMessage(EventId = 1, Message = "{Method} {Path} model={Model} status={Status} hold_ms={HoldMs} total_ms={TotalMs:0.0} resends={Resends}")]
    private static partial void LogRequest(ILogger logger, LogLevel level, string method, string path, string model, int status, long holdMs, double totalMs, int resends);
}
