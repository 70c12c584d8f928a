using System.Diagnostics;
using System.Net;
using LmsProxy.Configuration;

namespace LmsProxy.Proxy;

/// <summary>The one connection pool to LM Studio that forwarded requests use (never an HttpClient: it would buffer).</summary>
internal sealed class UpstreamInvoker : IDisposable
{
    // The held body of the forward being prepared on this thread. YARP calls the invoker right after the transforms,
    // which complete synchronously, so offer and send meet on one thread; a send elsewhere finds no offer for its own
    // request and goes as YARP streams it (the same bytes, one write more). Instead of the request's Options: that
    // is a dictionary per forward.
    [ThreadStatic]
    private static (HttpRequestMessage? Request, WholeBody? Body) t_offered;

    /// <summary>Called by the transformer on a forward whose body the proxy holds whole.</summary>
    public static void OfferWholeBody(HttpRequestMessage request, WholeBody body) => t_offered = (request, body);

    private static WholeBody? TakeWholeBody(HttpRequestMessage request)
    {
        var (offered, body) = t_offered;
        t_offered = default;
        return ReferenceEquals(offered, request) ? body : null;
    }

    public UpstreamInvoker(ProxySettings settings)
    {
        Invoker = new HttpMessageInvoker(new WholeBodySender
        {
            InnerHandler = new SocketsHttpHandler
            {
                UseProxy = false,
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.None,
                UseCookies = false,
                ConnectTimeout = settings.Current.Forwarding.ConnectTimeout,
                EnableMultipleHttp2Connections = true,
                ActivityHeadersPropagator = new Yarp.ReverseProxy.Forwarder.ReverseProxyPropagator(DistributedContextPropagator.Current),
            },
        });
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();

    /// <summary>
    /// YARP streams a request body, and flushes the headers before it: two writes to the socket, two TCP segments.
    /// A body the proxy already holds (every inference request) goes with its headers in one write instead: one
    /// system call per request less, on the proxy and on LM Studio (the benchmark counts them with strace).
    /// </summary>
    internal sealed class WholeBodySender : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.Content is { } streamed && TakeWholeBody(request) is { } body)
            {
                var whole = new ReadOnlyMemoryContent(body.Content);
                foreach (var (name, values) in streamed.Headers.NonValidated)
                {
                    // The new content's own length is the body's: only the other headers are copied (Content-Type mostly).
                    if (!name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) whole.Headers.TryAddWithoutValidation(name, values.ToString());
                }
                request.Content = whole;
            }
            return base.SendAsync(request, cancellationToken);
        }
    }
}
