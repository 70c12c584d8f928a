using System.Net;
using LmsProxy.Configuration;
using LmsProxy.Hosts;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>What every forward shares: the host's transformers, YARP's request settings, and the capture of response ids.</summary>
internal sealed partial class ProxyHandler
{
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

    private HostTransformers TransformersFor(LmStudioHost host) =>
        _transformers.GetValue(host, h => new HostTransformers(
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.PassThrough, h.Name), // the host name, for auth errors (F16)
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.Inference, h.Name),
            new UpstreamTransformer(_settings, h.Options.ApiKey, TransformMode.UnknownPath, h.Name)));

    private ForwarderRequestConfig RequestConfig(LmsProxyOptions options)
    {
        var cached = _requestConfig;
        if (ReferenceEquals(cached.Options, options)) return cached.Config;
        var config = new ForwarderRequestConfig { ActivityTimeout = options.Forwarding.ActivityTimeout, Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionOrLower };
        _requestConfig = (options, config);
        return config;
    }

    private sealed record HostTransformers(HttpTransformer PassThrough, HttpTransformer Inference, HttpTransformer UnknownPath);
}
