using System.Globalization;
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
/// keep-alives started is in ProxyHandler.StartedStream.cs; how each ending is answered and recorded in ProxyHandler.Finish.cs; client
/// load/unload routing in ModelControl.cs; the try and its state in ProxyHandler.Attempt.cs; requests that name no model
/// in ProxyHandler.Other.cs; the host's transformers and YARP's settings in ProxyHandler.Upstream.cs; the forward on a
/// lease, and the forward itself, in ProxyHandler.Forward.cs.) This file is the way of one model request in the order it
/// happens: the warm path, then the re-send loop.
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
    private readonly Sharing.SharingGate _sharing;
    private readonly ResiliencePipeline<Attempt> _resend;
    private readonly ConditionalWeakTable<LmStudioHost, HostTransformers> _transformers = [];
    private (LmsProxyOptions Options, ForwarderRequestConfig Config) _requestConfig;

    public ProxyHandler(IHttpForwarder forwarder, UpstreamInvoker invoker, ProxySettings settings, Scheduler scheduler, HostCluster cluster,
        ConversationAffinity affinity, ProxyMetrics metrics, TimeProvider time, ILoggerFactory loggerFactory, HeldBodyBudget heldBodies,
        ActivityRecorder activity, Sharing.SharingGate sharing)
    {
        _sharing = sharing;
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

    /// <summary>Not async itself: an inference request's task is returned as it is (one state machine less per request).</summary>
    public Task HandleAsync(HttpContext context)
    {
        var options = _settings.Current;
        var kind = RequestPaths.Classify(context.Request);
        return kind switch
        {
            RequestKind.Inference => HandleModelRequestAsync(context, options),
            RequestKind.ModelLookup => ModelLookup.AnswerAsync(context, _scheduler, options),
            RequestKind.CountTokens => TokenCounter.AnswerAsync(context, options),
            _ => ForwardOtherAsync(context, options, kind),
        };
    }

    private async Task HandleModelRequestAsync(HttpContext context, LmsProxyOptions options)
    {
        var started = _time.GetTimestamp();
        _activity.Begin(context, started, null); // the record, its response tap, the request's own cancellation
        try
        {
            var (request, problem) = await ModelRequestReader.ReadAsync(context.Request, options, _heldBodies, context.RequestAborted, _scheduler);
            if (problem is not null)
            {
                await problem.WriteAsync(context);
                Record(context, null, null, "bad_request", TimeSpan.Zero, started, warm: false);
                return;
            }
            var resolved = _scheduler.Catalog.Resolve(request!.Model)?.Key;
            _activity.Requested(context, request!, resolved);
            var deadline = started + (long)(options.Holding.HoldTimeout.TotalSeconds * _time.TimestampFrequency);
            using (request)
            {
                // The key's model list and limits (Sharing/): refused here, or waiting under MaxConcurrent, before anything is held.
                var (refusal, keyTicket) = await _sharing.AdmitAsync(context, request!, resolved, options, deadline);
                if (refusal is not null)
                {
                    await RefuseForKeyAsync(context, request!, refusal, started);
                    return;
                }
                using var heldForKey = keyTicket;
                // Every forward, whichever path it takes, sends the body the proxy holds (an alias may have changed its length).
                context.Request.ContentLength = request!.Length;
                if (context.Request.Headers.TransferEncoding.Count > 0) context.Request.Headers.TransferEncoding = default;
                var pin = request.PreviousResponseId is { } previous ? _affinity.HostOf(previous) : null;
                var last = default(Attempt);

                // The warm path: a ready instance, leased without a lock; most requests end here.
                if (_scheduler.TryWarm(request.Model, pin) is { } warm)
                {
                    // ForwardLeasedAsync, inline: one async layer less, and its box, the largest allocation of a request.
                    Attempt first;
                    try
                    {
                        if (await _sharing.TakeSlotAsync(context, warm, deadline) is { } noSlot)
                        {
                            first = new(AttemptKind.Refused, warm.Host, Refusal: noSlot);
                        }
                        else
                        {
                            try
                            {
                                var (sending, swap) = StartForward(context, request, warm.Host, TransformMode.Inference);
                                ForwarderError error;
                                using (swap) error = await sending;
                                first = ForwardOutcome(context, warm.Host, warm, error);
                            }
                            finally
                            {
                                _sharing.ReleaseSlot(context, warm);
                            }
                        }
                    }
                    finally
                    {
                        _scheduler.Release(warm);
                    }
                    if (first is { Kind: AttemptKind.Forwarded, Error: ForwarderError.None })
                    {
                        Scheduler.ForwardSucceeded(warm);
                        Interlocked.Increment(ref warm.Forwarded.Value);
                        if (_logger.IsEnabled(LogLevel.Debug)) Log(context, request, TimeSpan.Zero, started, warm: true, 0);
                        return;
                    }
                    if (first.Kind is AttemptKind.Forwarded or AttemptKind.Failed or AttemptKind.Refused)
                    {
                        await FinishAsync(context, request, first, TimeSpan.Zero, started, warm: false);
                        return;
                    }
                    last = first;
                }
                await HoldAndForwardAsync(context, request, options, pin, deadline, last, started);
            }
        }
        finally
        {
            _activity.Finished(context); // every way out, the warm path's success included
        }
    }

    /// <summary>
    /// The way of a request that is not served warm: it waits for the scheduler, with keep-alives for a stream, and is
    /// re-sent while the model is not loaded yet. Its own state machine: the warm path's stays small.
    /// </summary>
    private async Task HoldAndForwardAsync(HttpContext context, ModelRequest request, LmsProxyOptions options, LmStudioHost? pin, long deadline, Attempt last, long started)
    {
        var ticket = new Scheduler.WaitTicket(); // where the request waits, for the keep-alives' words
        await using var keepAlive = StreamKeepAlive.For(context, request, options, _time, () => _scheduler.Describe(ticket));
        var state = new RequestState(this, context, request, pin, deadline, keepAlive) { Last = last, Ticket = ticket };
        var attempt = await _resend.ExecuteAsync(static (s, _) => s.Handler.AttemptAsync(s), state, context.RequestAborted);
        await FinishAsync(context, request, attempt, state.Held, started, warm: false, keepAlive, state.Resends);
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
                return state.Last = new(AttemptKind.Refused, Refusal: Admission.Refusal(AdmissionStatus.HoldTimeout,
                    $"'{state.Request.RequestedModel}' could not be served within {_settings.Current.Holding.HoldTimeout.TotalSeconds:0} s (LmsProxy:HoldTimeout): LM Studio kept failing it ({state.Last.Kind})."));
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
            case { Kind: AttemptKind.NotLoaded, Leased: { } instance }:
                return await _scheduler.ReportNotLoadedAsync(instance, aborted);
            case { Kind: AttemptKind.CutOff } cutOff:
                // Evicted under the request: it waits for a reload. Still loaded: the request itself is the trouble.
                if (cutOff.Leased is { } cut && !await _scheduler.ReportCutOffAsync(cut, aborted)) return null;
                if (++state.CutOffs < CutOffsTolerated) return null;
                return Admission.Refusal(AdmissionStatus.UpstreamAborted,
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
        var admission = await _scheduler.AdmitAsync(state.Request.Model, state.Pin, state.Deadline, state.Context.RequestAborted, state.Ticket, Keys.ApiKey.Of(state.Context)?.Priority ?? Keys.KeyPriority.Normal);
        state.Held += admission.Held;
        if (state.KeepAlive is not { } keepAlive) return await ForwardAdmittedAsync(state, admission);

        // No keep-alive is written between here and the end of this forward; they go on if the request waits again.
        try
        {
            await keepAlive.HoldAsync();
        }
        catch (OperationCanceledException)
        {
            if (admission.Leased is { } taken) _scheduler.Release(taken);
            return new(AttemptKind.Refused, Refusal: Admission.Refusal(AdmissionStatus.Cancelled, "The client disconnected while waiting."));
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
            if (admission.Leased is { } taken) _scheduler.Release(taken);
            return new(AttemptKind.Refused, admission.Host, Refusal: Admission.Refusal(AdmissionStatus.UpstreamUnavailable,
                $"LM Studio at {admission.Host!.Url} is not reachable, and no other host can serve '{request.Model}'. {Loading.LmStudioApi.StartHint}"));
        }
        var started = state.KeepAlive?.Committed == true;
        if (state.Held > TimeSpan.Zero && !started)
        {
            context.Response.Headers["X-LmsProxy-Hold-Ms"] = ((long)state.Held.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        }
        if (admission.Leased is not { } leased)
        {
            // LM Studio refuses the proxy's own calls: the request goes as it is and LM Studio answers.
            return started
                ? await ForwardIntoStartedStreamAsync(state, admission.Host!, null)
                : await ForwardAsync(context, request, admission.Host!, null, TransformMode.PassThrough);
        }
        return await ForwardLeasedAsync(context, request, leased, state.Deadline, started ? state : null);
    }
}
