using LmsProxy.Activity;
using LmsProxy.Diagnostics;
using LmsProxy.Hosts;
using LmsProxy.Scheduling;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>
/// How a request ends: the outcome (for the metric, the activity record and its one log line) and the error, if any,
/// in the protocol's shape, written in the stream when keep-alives already sent the 200.
/// </summary>
internal sealed partial class ProxyHandler
{
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
        AdmissionStatus.SlotTimeout => ("queue_timeout", new(StatusCodes.Status503ServiceUnavailable, "queue_timeout", refusal.Detail! + " Retry shortly.", TimeSpan.FromSeconds(5))),
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
                $"LM Studio at {upstream} sent nothing for {_settings.Current.Forwarding.ActivityTimeout.TotalSeconds:0} s (LmsProxy:ActivityTimeout).")),
            ForwarderError.Request => ("upstream_unavailable", new(StatusCodes.Status502BadGateway, "upstream_unavailable",
                $"LM Studio at {upstream} is not reachable: {detail ?? "connection failed"}. {Loading.LmStudioApi.StartHint}")),
            ForwarderError.RequestBodyClient => ("bad_request", ProxyError.BadRequest("request_body_error", $"The request body could not be read: {detail}")),
            _ => ("upstream_error", new(StatusCodes.Status502BadGateway, "upstream_error", $"Forwarding to LM Studio at {upstream} failed ({error}): {detail}")),
        };
    }

    [LoggerMessage(EventId = 1, Message = "{Method} {Path} model={Model} status={Status} hold_ms={HoldMs} total_ms={TotalMs:0.0} resends={Resends}")]
    private static partial void LogRequest(ILogger logger, LogLevel level, string method, string path, string model, int status, long holdMs, double totalMs, int resends);
}
