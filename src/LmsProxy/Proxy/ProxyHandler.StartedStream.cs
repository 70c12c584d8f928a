using System.Net;
using LmsProxy.Hosts;
using LmsProxy.Scheduling;

namespace LmsProxy.Proxy;

/// <summary>
/// The forward into a response that keep-alives have started: YARP refuses to forward then (the response has
/// started), so the request goes through the same connection pool by hand and LM Studio's stream is copied on, flushed
/// at every read. The request is built by the same transformer as YARP's forwards (headers, credentials, target, the
/// body's length), and it keeps the same rules: the activity time-out, response ids noted for affinity, a "not loaded"
/// answer or a failure before any answer held back for a re-send. Anything else becomes an in-stream error event.
/// </summary>
internal sealed partial class ProxyHandler
{
    private async ValueTask<Attempt> ForwardIntoStartedStreamAsync(RequestState state, LmStudioHost host, HostedModel? instance)
    {
        var (context, request, keepAlive) = (state.Context, state.Request, state.KeepAlive!);
        _activity.Forwarding(context, host.Name);
        var aborted = context.RequestAborted;
        var activityTimeout = _settings.Current.Forwarding.ActivityTimeout;
        using var activity = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        activity.CancelAfter(activityTimeout);
        context.Request.Body = request.OpenBody();
        using var message = new HttpRequestMessage(HttpMethod.Post, UpstreamTransformer.TargetUri(context, host.Prefix))
        {
            Content = new ReadOnlyMemoryContent(request.Body),
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        var transformer = instance is null ? TransformersFor(host).PassThrough : TransformersFor(host).Inference;
        await transformer.TransformRequestAsync(context, message, host.Prefix, aborted);

        HttpResponseMessage response;
        try
        {
            response = await _invoker.SendAsync(message, activity.Token);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException && !aborted.IsCancellationRequested)
        {
            var kind = ForwardFailure.Classify(ex);
            if (kind != FailureKind.Failed) return new(AttemptOf(kind), host, instance);
            await keepAlive.WriteErrorAsync(activity.IsCancellationRequested
                ? new ProxyError(StatusCodes.Status504GatewayTimeout, "upstream_timeout", $"LM Studio at {host.Url} sent nothing for {activityTimeout.TotalSeconds:0} s (LmsProxy:ActivityTimeout).")
                : new ProxyError(StatusCodes.Status502BadGateway, "upstream_error", $"Forwarding to LM Studio at {host.Url} failed: {Loading.Excerpt.Of(ex.Message)}"));
            return new(AttemptKind.Forwarded, host, instance);
        }
        using (response)
        using (CaptureResponseIds(context, host))
        {
            if (!response.IsSuccessStatusCode)
            {
                var text = await response.Content.ReadAsStringAsync(activity.Token);
                if (instance is not null && response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound && UpstreamTransformer.IsNotLoadedAnswer(text))
                {
                    return new(AttemptKind.NotLoaded, host, instance);
                }
                await keepAlive.WriteErrorAsync(new ProxyError((int)response.StatusCode, "upstream_error", $"LM Studio answered HTTP {(int)response.StatusCode}: {Loading.Excerpt.Of(text, 1000)}"));
                return new(AttemptKind.Forwarded, host, instance);
            }
            await using var body = await response.Content.ReadAsStreamAsync(activity.Token);
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
            try
            {
                int read;
                while ((read = await body.ReadAsync(buffer, activity.Token)) > 0)
                {
                    activity.CancelAfter(activityTimeout); // silence, not length, is what the time-out measures
                    await keepAlive.WriteAsync(buffer.AsMemory(0, read), aborted);
                }
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or OperationCanceledException && !aborted.IsCancellationRequested)
            {
                await keepAlive.WriteErrorAsync(activity.IsCancellationRequested
                    ? new ProxyError(StatusCodes.Status504GatewayTimeout, "upstream_timeout", $"LM Studio at {host.Url} went silent for {activityTimeout.TotalSeconds:0} s mid-stream (LmsProxy:ActivityTimeout).")
                    : new ProxyError(StatusCodes.Status502BadGateway, "upstream_aborted", $"LM Studio at {host.Url} ended the stream early: {ex.Message}"));
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
            return new(AttemptKind.Forwarded, host, instance);
        }
    }
}
