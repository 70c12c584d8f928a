using System.Diagnostics;
using System.Globalization;
using System.Net;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Loading;
using LmsProxy.Models;
using Polly;
using Polly.Retry;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>
/// The way of a proxied request: read the model (inference requests only), hold until it is loaded,
/// forward with YARP, and re-send while LM Studio still says "not loaded" and nothing reached the client.
/// YARP's direct forwarder is used (rather than the route pipeline) because only it can send one request twice.
/// </summary>
public sealed partial class ProxyHandler
{
    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _invoker;
    private readonly ProxySettings _settings;
    private readonly LoadCoordinator _coordinator;
    private readonly ModelRegistry _registry;
    private readonly LmStudioApi _api;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger _logger;
    private readonly ResiliencePipeline<Attempt> _resend;
    private (LmsProxyOptions Options, ForwarderRequestConfig Config) _requestConfig;

    public ProxyHandler(IHttpForwarder forwarder, UpstreamInvoker invoker, ProxySettings settings, LoadCoordinator coordinator,
        ModelRegistry registry, LmStudioApi api, ProxyMetrics metrics, ILoggerFactory loggerFactory)
    {
        _api = api;
        _forwarder = forwarder;
        _invoker = invoker.Invoker;
        _settings = settings;
        _coordinator = coordinator;
        _registry = registry;
        _metrics = metrics;
        _logger = loggerFactory.CreateLogger("LmsProxy.Requests");
        _resend = new ResiliencePipelineBuilder<Attempt>()
            .AddRetry(new RetryStrategyOptions<Attempt>
            {
                // The count is read per attempt so a configuration edit applies at once.
                MaxRetryAttempts = 10,
                Delay = TimeSpan.Zero,
                ShouldHandle = args => ValueTask.FromResult(
                    args.Outcome.Result is { Kind: AttemptKind.NotLoaded } && args.AttemptNumber < _settings.Current.NotLoadedRetries),
            })
            .Build();
    }

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var options = _settings.Current;
        if (!ModelRequestReader.CarriesModel(context.Request))
        {
            HttpTransformer transformer = ModelListTransformer.Handles(context.Request)
                ? new ModelListTransformer(await CurrentCatalogAsync(context.RequestAborted), options)
                : new UpstreamResponseTransformer(_metrics, options, detectNotLoaded: false);
            var error = await _forwarder.SendAsync(context, UpstreamPrefix(options), _invoker, RequestConfig(options), transformer);
            await Finish(context, null, new Attempt(AttemptKind.Forwarded, error), TimeSpan.Zero, started);
            return;
        }

        var (request, problem) = await ModelRequestReader.ReadAsync(context.Request, options, context.RequestAborted);
        if (problem is not null)
        {
            await problem.WriteAsync(context);
            Record(context, null, "bad_request", TimeSpan.Zero, started);
            return;
        }

        var state = new RequestState(this, context, request!);
        var attempt = await _resend.ExecuteAsync(static (s, _) => s.Handler.AttemptAsync(s), state, context.RequestAborted);
        await Finish(context, request, attempt, state.Held, started);
    }

    private async ValueTask<Attempt> AttemptAsync(RequestState state)
    {
        var (context, request) = (state.Context, state.Request);
        var ensured = await _coordinator.EnsureLoadedAsync(request.Model, context.RequestAborted);
        state.Held += ensured.Held;
        if (ensured.Status is not (EnsureStatus.Ready or EnsureStatus.Unverified)) return new Attempt(AttemptKind.Refused, Refusal: ensured);

        context.Request.Body = new MemoryStream(request.Body, writable: false);
        context.Request.ContentLength = request.Body.Length;
        context.Request.Headers.TransferEncoding = default;
        if (state.Held > TimeSpan.Zero)
        {
            context.Response.Headers["X-LmsProxy-Hold-Ms"] = ((long)state.Held.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        }

        var options = _settings.Current;
        var transformer = new UpstreamResponseTransformer(_metrics, options, detectNotLoaded: true);
        var error = await _forwarder.SendAsync(context, UpstreamPrefix(options), _invoker, RequestConfig(options), transformer);
        if (!transformer.NotLoaded) return new Attempt(AttemptKind.Forwarded, error);

        // LM Studio evicted the model, or JIT did not load it: correct the registry so the next attempt loads it.
        _registry.MarkNotLoaded(request.Model);
        _metrics.NotLoadedAbsorbed(request.Model);
        LogNotLoadedAbsorbed(_logger, request.Model);
        context.Response.Clear();
        return new Attempt(AttemptKind.NotLoaded, error);
    }

    private async Task Finish(HttpContext context, ModelRequest? request, Attempt attempt, TimeSpan held, long started)
    {
        var outcome = attempt.Kind switch
        {
            AttemptKind.Refused => await WriteRefusal(context, request!.RequestedModel, attempt.Refusal),
            AttemptKind.NotLoaded => await Write(context, new ProxyError(StatusCodes.Status503ServiceUnavailable, "model_not_loaded",
                $"LM Studio still answered that '{request!.Model}' is not loaded after {_settings.Current.NotLoadedRetries} reloads.", TimeSpan.FromSeconds(5)), "retries_exhausted"),
            _ => await WriteForwarderError(context, attempt.Error),
        };
        Record(context, request, outcome, held, started);
    }

    /// <summary>The request's metric and its one log line.</summary>
    private void Record(HttpContext context, ModelRequest? request, string outcome, TimeSpan held, long started)
    {
        _metrics.RequestEnded(request?.Model, outcome);
        // PathString converts to its escaped form: a %0A in the path cannot forge a log line (tested).
        LogRequest(_logger, context.Request.Method, context.Request.Path, request?.RequestedModel ?? "-", context.Response.StatusCode,
            (long)held.TotalMilliseconds, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private static Task<string> WriteRefusal(HttpContext context, string model, EnsureResult refusal) => refusal.Status switch
    {
        EnsureStatus.NotFound => Write(context, new ProxyError(StatusCodes.Status404NotFound, "model_not_found", refusal.Detail!), "not_found"),
        EnsureStatus.LoadFailed => Write(context, new ProxyError(StatusCodes.Status503ServiceUnavailable, "model_load_failed", $"Loading '{model}' failed: {refusal.Detail}", TimeSpan.FromSeconds(5)), "load_failed"),
        EnsureStatus.UpstreamUnavailable => Write(context, new ProxyError(StatusCodes.Status502BadGateway, "upstream_unavailable", refusal.Detail!), "upstream_unavailable"),
        EnsureStatus.HoldTimeout => Write(context, new ProxyError(StatusCodes.Status503ServiceUnavailable, "model_loading", refusal.Detail! + " It is still loading; retry shortly.", TimeSpan.FromSeconds(10)), "hold_timeout"),
        EnsureStatus.QueueFull => Write(context, new ProxyError(StatusCodes.Status503ServiceUnavailable, "too_many_waiting", refusal.Detail! + " Retry shortly.", TimeSpan.FromSeconds(5)), "queue_full"),
        _ => Task.FromResult("cancelled"),
    };

    private Task<string> WriteForwarderError(HttpContext context, ForwarderError error)
    {
        if (error == ForwarderError.None) return Task.FromResult("forwarded");
        if (context.RequestAborted.IsCancellationRequested || error is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled) return Task.FromResult("cancelled");
        if (context.Response.HasStarted) return Task.FromResult("upstream_aborted");

        var upstream = _settings.Current.Upstream;
        var detail = context.Features.Get<IForwarderErrorFeature>()?.Exception?.Message;
        return error switch
        {
            ForwarderError.RequestTimedOut => Write(context, new ProxyError(StatusCodes.Status504GatewayTimeout, "upstream_timeout",
                $"LM Studio at {upstream} sent nothing for {_settings.Current.ActivityTimeout.TotalSeconds:0} s (LmsProxy:ActivityTimeout)."), "upstream_timeout"),
            ForwarderError.Request => Write(context, new ProxyError(StatusCodes.Status502BadGateway, "upstream_unavailable",
                $"LM Studio at {upstream} is not reachable: {detail ?? "connection failed"}. {LmStudioApi.StartHint}"), "upstream_unavailable"),
            ForwarderError.RequestBodyClient => Write(context, ProxyError.BadRequest("request_body_error", $"The request body could not be read: {detail}"), "bad_request"),
            _ => Write(context, new ProxyError(StatusCodes.Status502BadGateway, "upstream_error", $"Forwarding to LM Studio at {upstream} failed ({error}): {detail}"), "upstream_error"),
        };
    }

    private static async Task<string> Write(HttpContext context, ProxyError error, string outcome)
    {
        await error.WriteAsync(context);
        return outcome;
    }

    private async Task<ModelCatalog> CurrentCatalogAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _registry.RefreshAsync(_api, cancellationToken);
        }
        catch (Exception ex) when (ex is UpstreamUnavailableException or UpstreamRefusedException)
        {
            return _registry.Catalog;
        }
    }

    private static string UpstreamPrefix(LmsProxyOptions options) => options.Upstream.AbsoluteUri.TrimEnd('/');

    private ForwarderRequestConfig RequestConfig(LmsProxyOptions options)
    {
        var cached = _requestConfig;
        if (ReferenceEquals(cached.Options, options)) return cached.Config;
        var config = new ForwarderRequestConfig { ActivityTimeout = options.ActivityTimeout, Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionOrLower };
        _requestConfig = (options, config);
        return config;
    }

    private enum AttemptKind
    {
        Forwarded,
        Refused,
        NotLoaded,
    }

    private readonly record struct Attempt(AttemptKind Kind, ForwarderError Error = ForwarderError.None, EnsureResult Refusal = default);

    private sealed class RequestState(ProxyHandler handler, HttpContext context, ModelRequest request)
    {
        public ProxyHandler Handler { get; } = handler;
        public HttpContext Context { get; } = context;
        public ModelRequest Request { get; } = request;
        public TimeSpan Held { get; set; }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "{Method} {Path} model={Model} status={Status} hold_ms={HoldMs} total_ms={TotalMs:0.0}")]
    private static partial void LogRequest(ILogger logger, string method, string path, string model, int status, long holdMs, double totalMs);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "LM Studio answered that {Model} is not loaded; loading it and re-sending")]
    private static partial void LogNotLoadedAbsorbed(ILogger logger, string model);
}
