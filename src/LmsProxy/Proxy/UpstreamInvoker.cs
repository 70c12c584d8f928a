using System.Diagnostics;
using System.Net;
using LmsProxy.Configuration;

namespace LmsProxy.Proxy;

/// <summary>The one connection pool to LM Studio that forwarded requests use (never an HttpClient: it would buffer).</summary>
public sealed class UpstreamInvoker : IDisposable
{
    public UpstreamInvoker(ProxySettings settings)
    {
        Invoker = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ConnectTimeout = settings.Current.ConnectTimeout,
            EnableMultipleHttp2Connections = true,
            ActivityHeadersPropagator = new Yarp.ReverseProxy.Forwarder.ReverseProxyPropagator(DistributedContextPropagator.Current),
        });
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();
}
