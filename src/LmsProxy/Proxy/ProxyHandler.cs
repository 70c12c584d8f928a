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
/// for the scheduler to make one ready, forward with YARP, and re-send while LM Studio still says "not loaded" or a
/// host cannot be reached, as long as nothing reached the client and the hold deadline allows. Everything else is
/// forwarded as it is. YARP's direct forwarder is used because only it can send one request twice.
/// </summary>
public sealed partial class ProxyHandler
{
    private static readonly HashSet<string> KnownPaths = new(StringComparer.OrdinalIgnoreCase)
    {
        "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
        "/api/v0/models", "/api/v0/chat/completions", "/api/v0/completions", "/api/v0/embeddings",
        "/api/v1/chat", "/api/v1/models", "/api/v1/models/load", "/api/v1/models/unload", "/api/v1/models/download", "/lmstudio-greeting",
    };

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _invoker;
    private readonly ProxySettings _settings;
    private readonly Scheduler _scheduler;
    private readonly HostCluster _cluster;
    private readonly ConversationAffinity _affinity;
    private readonly ProxyMetrics _metrics;
    private readonly ActivityRecorder _activity; // [activity]
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ResiliencePipeline<Attempt> _resend;
    private readonly ConditionalWeakTable<LmStudioHost, HostTransformers> _transformers = [];
    private (LmsProxyOptions Options, ForwarderRequestConfig Config) _requestConfig;

    public ProxyHandler(IHttpForwarder forwarder, UpstreamInvoker invoker, ProxySettings settings, Scheduler scheduler, HostCluster cluster,
        ConversationAffinity affinity, ProxyMetrics metrics, TimeProvider time, ILoggerFactory loggerFactory, ActivityRecorder activity)
    {
        _activity = activity; // [activity]
        _time = time;
        _forwarder = forwarder;
        _invoker = invoker.Invoker;
        _settings = settings;
        _scheduler = scheduler;
        _cluster = cluster;
        _affinity = affinity;
        _metrics = metrics;
        _logger = loggerFactory.CreateLogger("LmsProxy.Requests");
        // Re-sends are bounded by the request's hold deadline (the scheduler answers HoldTimeout past it), not by a count;
        // the scheduler's guards stop an LM Studio that keeps contradicting itself.
        _resend = new ResiliencePipelineBuilder<Attempt>()
            .AddRetry(new RetryStrategyOptions<Attempt>
            {
                MaxRetryAttempts = int.MaxValue,
                Delay = TimeSpan.Zero,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { Kind: AttemptKind.NotLoaded or AttemptKind.Unreachable }),
            })
            .Build();
    }

    public async Task HandleAsync(HttpContext context)
    {
        var options = _settings.Current;
        if (ModelRequestReader.CarriesModel(context.Request))
        {
            await HandleModelRequestAsync(context, options);
            return;
        }
        if (ModelLookup.Handles(context.Request))
        {
            await ModelLookup.AnswerAsync(context, _scheduler, options);
            return;
        }
        if (TokenCounter.Handles(context.Request))
        {
            await TokenCounter.AnswerAsync(context, options);
            return;
        }

        var host = _scheduler.DefaultHost();
        if (host is null)
        {
            await new ProxyError(StatusCodes.Status502BadGateway, "upstream_unavailable", "No LM Studio host is configured.").WriteAsync(context);
            return;
        }
        if (context.Request.Headers.Upgrade.Count == 0 && IsKnownPath(context.Request.Path)) _activity.Begin(context, _time.GetTimestamp(), null); // [activity]
        var transformers = TransformersFor(host);
        HttpTransformer transformer = ModelListTransformer.Handles(context.Request)
            ? new ModelListTransformer(transformers.PassThrough, await CurrentCatalogAsync(context.RequestAborted), options)
            : IsKnownPath(context.Request.Path) || context.Request.Headers.Upgrade.Count > 0 ? transformers.PassThrough : transformers.UnknownPath;
        var error = await _forwarder.SendAsync(context, host.Prefix, _invoker, RequestConfig(options), transformer);
        await FinishAsync(context, null, new Attempt(AttemptKind.Forwarded, host, Error: error), TimeSpan.Zero, _time.GetTimestamp(), warm: true);
    }

    private async Task HandleModelRequestAsync(HttpContext context, LmsProxyOptions options)
    {
        var started = _time.GetTimestamp();
        _activity.Begin(context, started, null); // [activity] the record, the response tap, the request's own cancellation
        var (request, problem) = await ModelRequestReader.ReadAsync(context.Request, options, context.RequestAborted);
        if (problem is not null)
        {
            await problem.WriteAsync(context);
            Record(context, null, null, "bad_request", TimeSpan.Zero, started, warm: false);
            return;
        }
        _activity.Requested(context, request!, _scheduler.Catalog.Resolve(request!.Model)?.Key); // [activity]
        using (request)
        {
            var pin = request!.PreviousResponseId is { } previous ? _affinity.HostOf(previous) : null;
            var last = default(Attempt);

            // The warm path: a ready instance, leased without a lock; most requests end here.
            if (_scheduler.TryWarm(request.Model, pin) is { } warm)
            {
                var first = await ForwardLeasedAsync(context, request, warm);
                if (first.Kind != AttemptKind.Forwarded || first.Error != ForwarderError.None)
                {
                    last = first;
                    if (first.Kind == AttemptKind.Forwarded)
                    {
                        await FinishAsync(context, request, first, TimeSpan.Zero, started, warm: false);
                        return;
                    }
                }
                else
                {
                    Interlocked.Increment(ref warm.Forwarded.Value);
                    if (_logger.IsEnabled(LogLevel.Debug)) Log(context, request, TimeSpan.Zero, started, warm: true);
                    return;
                }
            }

            var deadline = started + (long)(options.HoldTimeout.TotalSeconds * _time.TimestampFrequency);
            await using var keepAlive = StreamKeepAlive.For(context, request, options, _time);
            var state = new RequestState(this, context, request, pin, deadline, keepAlive) { Last = last };
            var attempt = await _resend.ExecuteAsync(static (s, _) => s.Handler.AttemptAsync(s), state, context.RequestAborted);
            await FinishAsync(context, request, attempt, state.Held, started, warm: false, keepAlive);
        }
    }

    /// <summary>One try: deal with what the last try said, wait for a ready instance, forward.</summary>
    private async ValueTask<Attempt> AttemptAsync(RequestState state)
    {
        var (context, request) = (state.Context, state.Request);
        switch (state.Last)
        {
            case { Kind: AttemptKind.NotLoaded, Instance: { } instance }:
                if (await _scheduler.ReportNotLoadedAsync(instance, context.RequestAborted) is { } refusal) return new(AttemptKind.Refused, Refusal: refusal);
                break;
            case { Kind: AttemptKind.Unreachable, Host: { } unreachable }:
                _cluster.ReportUnreachable(unreachable);
                state.Unreachable.Add(unreachable);
                if (state.Pin is not null) return new(AttemptKind.Refused, Refusal: Scheduler.ConversationHostDown(state.Pin));
                break;
        }

        _activity.Queued(context); // [activity]
        var admission = await _scheduler.AdmitAsync(request.Model, state.Pin, state.Deadline, context.RequestAborted);
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
        keepAlive.Release(final: attempt.Kind is not (AttemptKind.NotLoaded or AttemptKind.Unreachable));
        return attempt;
    }

    private async ValueTask<Attempt> ForwardAdmittedAsync(RequestState state, Admission admission)
    {
        var (context, request) = (state.Context, state.Request);
        if (!admission.CanForward) return new(AttemptKind.Refused, admission.Host, Refusal: admission);
        if (state.Unreachable.Contains(admission.Host!))
        {
            // Nowhere else to go: the host that just failed is the only one with this model.
            if (admission.Instance is { } taken) _scheduler.Release(taken);
            return new(AttemptKind.Forwarded, admission.Host, Error: ForwarderError.Request);
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
        _activity.Forwarding(context, host.Name); // [activity]
        context.Request.Body = request.OpenBody();
        context.Request.ContentLength = request.Length;
        if (context.Request.Headers.TransferEncoding.Count > 0) context.Request.Headers.TransferEncoding = default;
        if (_scheduler.SeveralHosts) context.Response.Headers["X-LmsProxy-Host"] = host.Name;

        var transformers = TransformersFor(host);
        var transformer = mode == TransformMode.Inference ? transformers.Inference : transformers.PassThrough;
        var options = _settings.Current;
        var body = context.Response.Body;
        var capture = _scheduler.SeveralHosts ? ResponseIdCapture.For(context.Request, body, id => _affinity.Record(id, host)) : null;
        if (capture is not null) context.Response.Body = capture;
        ForwarderError error;
        try
        {
            error = await _forwarder.SendAsync(context, host.Prefix, _invoker, RequestConfig(options), transformer);
        }
        finally
        {
            if (capture is not null) context.Response.Body = body;
        }

        if (context.Features.Get<ForwardSignal>() is not null)
        {
            // LM Studio evicted the model, or JIT did not load it; nothing reached the client.
            context.Features.Set<ForwardSignal>(null);
            context.Response.Clear();
            return new(AttemptKind.NotLoaded, host, instance);
        }
        if (error == ForwarderError.Request && !context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            context.Response.Clear();
            return new(KindOfFailure(context.Features.Get<IForwarderErrorFeature>()?.Exception, instance), host, instance);
        }
        return new(AttemptKind.Forwarded, host, instance, error);
    }

    /// <summary>
    /// Forwards once keep-alives have started the response: YARP refuses to (the response has started), so the request
    /// goes through the same connection pool by hand and LM Studio's stream is copied on, flushed at every read.
    /// A "not loaded" answer is still held back for a re-send; any other refusal becomes an in-stream error.
    /// </summary>
    private async ValueTask<Attempt> ForwardIntoStartedStreamAsync(RequestState state, LmStudioHost host, Instance? instance)
    {
        var (context, request, keepAlive) = (state.Context, state.Request, state.KeepAlive!);
        _activity.Forwarding(context, host.Name); // [activity]
        var aborted = context.RequestAborted;
        using var message = new HttpRequestMessage(HttpMethod.Post, UpstreamTransformer.TargetUri(context, host.Prefix))
        {
            Content = new ReadOnlyMemoryContent(request.Body),
            Version = HttpVersion.Version11,
        };
        foreach (var (name, values) in context.Request.Headers)
        {
            if (name.StartsWith("Content-", StringComparison.OrdinalIgnoreCase)) message.Content.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            else if (!HopByHop.Contains(name)) message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
        }
        Security.UpstreamCredentials.Apply(message, _settings.Current, host.Options.ApiKey);

        HttpResponseMessage response;
        try
        {
            response = await _invoker.SendAsync(message, aborted);
        }
        catch (HttpRequestException ex) when (!aborted.IsCancellationRequested)
        {
            return new(KindOfFailure(ex, instance), host, instance);
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                var text = await response.Content.ReadAsStringAsync(aborted);
                if (instance is not null && response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound && UpstreamTransformer.IsNotLoadedAnswer(text))
                {
                    return new(AttemptKind.NotLoaded, host, instance);
                }
                await keepAlive.WriteErrorAsync(new ProxyError((int)response.StatusCode, "upstream_error", $"LM Studio answered HTTP {(int)response.StatusCode}: {Loading.Excerpt.Of(text, 1000)}"));
                return new(AttemptKind.Forwarded, host, instance);
            }
            await using var body = await response.Content.ReadAsStreamAsync(aborted);
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
            try
            {
                int read;
                while ((read = await body.ReadAsync(buffer, aborted)) > 0) await keepAlive.WriteAsync(buffer.AsMemory(0, read), aborted);
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException && !aborted.IsCancellationRequested)
            {
                await keepAlive.WriteErrorAsync(new ProxyError(StatusCodes.Status502BadGateway, "upstream_aborted", $"LM Studio at {host.Url} ended the stream early: {ex.Message}"));
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
            return new(AttemptKind.Forwarded, host, instance);
        }
    }

    /// <summary>
    /// A forward that failed before any answer: a refused connection means the host is down; a request cut off after the
    /// host took it means LM Studio unloaded the model under it (it has no drain): handled like "not loaded".
    /// </summary>
    private static AttemptKind KindOfFailure(Exception? exception, Instance? instance) =>
        instance is null
        || exception is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError }
        || exception?.InnerException is System.Net.Sockets.SocketException
            ? AttemptKind.Unreachable
            : AttemptKind.NotLoaded;

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Proxy-Authorization", "Expect",
    };

    private async Task FinishAsync(HttpContext context, ModelRequest? request, Attempt attempt, TimeSpan held, long started, bool warm, StreamKeepAlive? keepAlive = null)
    {
        var (outcome, error) = attempt.Kind == AttemptKind.Refused ? RefusalError(request!.RequestedModel, attempt.Refusal) : ForwarderFailure(context, attempt.Host, attempt.Error, keepAlive);
        error ??= ActivityRecorder.CancelledByOperator(context); // [activity] an operator's cancel: the client gets an error in its protocol's shape
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
        Record(context, request, attempt.Host ?? attempt.Refusal.Host, outcome, held, started, warm);
    }

    /// <summary>The request's metric and its log line (on the warm path, only at Debug level).</summary>
    private void Record(HttpContext context, ModelRequest? request, LmStudioHost? host, string outcome, TimeSpan held, long started, bool warm)
    {
        _activity.End(context, host?.Name, outcome, held); // [activity]
        if (request is not null || outcome != "forwarded")
        {
            var model = request is not null && _scheduler.Catalog.Resolve(request.Model) is { } known ? known.Key : ProxyMetrics.NoModel;
            _metrics.RequestEnded(model, host?.Name ?? "-", outcome);
        }
        if (!warm || _logger.IsEnabled(LogLevel.Debug) || context.Response.StatusCode >= 500) Log(context, request, held, started, warm);
    }

    private void Log(HttpContext context, ModelRequest? request, TimeSpan held, long started, bool warm)
    {
        // PathString converts to its escaped form: a %0A in the path cannot forge a log line (tested).
        var level = warm && context.Response.StatusCode < 500 ? LogLevel.Debug : LogLevel.Information;
        LogRequest(_logger, level, context.Request.Method, context.Request.Path, request?.RequestedModel ?? "-", context.Response.StatusCode,
            (long)held.TotalMilliseconds, _time.GetElapsedTime(started).TotalMilliseconds);
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
        _ => ("cancelled", null),
    };

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

    private static bool IsKnownPath(PathString path)
    {
        var value = path.Value!;
        if (KnownPaths.Contains(value.TrimEnd('/'))) return true;
        return value.StartsWith("/api/v0/models/", StringComparison.OrdinalIgnoreCase)
            || value.StartsWith("/api/v1/models/download/status/", StringComparison.OrdinalIgnoreCase);
    }

    private HostTransformers TransformersFor(LmStudioHost host) =>
        _transformers.GetValue(host, h => new HostTransformers(
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.PassThrough),
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.Inference),
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.UnknownPath)));

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
        Forwarded,
        Refused,
        NotLoaded,
        Unreachable,
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
        public Attempt Last { get; set; }
        public HashSet<LmStudioHost> Unreachable { get; } = [];
    }

    [LoggerMessage(EventId = 1, Message = "{Method} {Path} model={Model} status={Status} hold_ms={HoldMs} total_ms={TotalMs:0.0}")]
    private static partial void LogRequest(ILogger logger, LogLevel level, string method, string path, string model, int status, long holdMs, double totalMs);
}
