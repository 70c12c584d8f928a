using LmsProxy.Hosts;
using LmsProxy.Scheduling;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>The forward itself: on a lease and one of its slots, through YARP to the host, and what its outcome means.</summary>
internal sealed partial class ProxyHandler
{
    /// <summary>
    /// (The warm path in ProxyHandler.cs has its own copy of this, inline.)
    /// Forwards on a lease once one of the instance's parallel slots is free (into the keep-alive's stream when
    /// <paramref name="startedStream"/> is given), and gives slot and lease back when the response is done or the client left.
    /// </summary>
    private async ValueTask<Attempt> ForwardLeasedAsync(HttpContext context, ModelRequest request, HostedModel leased, long deadline, RequestState? startedStream = null)
    {
        try
        {
            if (await _sharing.TakeSlotAsync(context, leased, deadline) is { } noSlot) return new(AttemptKind.Refused, leased.Host, Refusal: noSlot);
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
                _sharing.ReleaseSlot(context, leased);
            }
        }
        finally
        {
            _scheduler.Release(leased);
        }
    }

    private async ValueTask<Attempt> ForwardAsync(HttpContext context, ModelRequest request, LmStudioHost host, HostedModel? instance, TransformMode mode)
    {
        var (sending, swap) = StartForward(context, request, host, mode);
        ForwarderError error;
        using (swap) error = await sending;
        return ForwardOutcome(context, host, instance, error);
    }

    /// <summary>Starts YARP's forward of the held body to <paramref name="host"/>; the swap puts the response body back after it.</summary>
    private (ValueTask<ForwarderError> Sending, ResponseBodySwap Swap) StartForward(HttpContext context, ModelRequest request, LmStudioHost host, TransformMode mode)
    {
        _activity.Forwarding(context, host.Name);
        context.Request.Body = request.OpenBody();
        if (_scheduler.SeveralHosts) context.Response.Headers["X-LmsProxy-Host"] = host.Name;

        var transformers = TransformersFor(host);
        var transformer = mode == TransformMode.Inference ? transformers.Inference : transformers.PassThrough;
        var config = RequestConfig(_settings.Current);
        var swap = CaptureResponseIds(context, host);
        // YARP's SendAsync is an async method: whatever fails in it fails its task, awaited under the swap.
        return (_forwarder.SendAsync(context, host.Prefix, _invoker, config, transformer), swap);
    }

    /// <summary>What the forward's outcome means: served, or not loaded, unreachable or cut off (nothing reached the client), or failed.</summary>
    private Attempt ForwardOutcome(HttpContext context, LmStudioHost host, HostedModel? instance, ForwarderError error)
    {
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
}
