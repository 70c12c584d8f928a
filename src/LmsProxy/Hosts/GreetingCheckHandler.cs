using System.Net;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Hosts;

/// <summary>
/// YARP's active health check counts any 2xx as healthy, but LM Studio answers 200 to every path it does not know
/// (and so may anything else on that port). This handler, in the cluster's HTTP client that YARP probes with, turns a
/// /lmstudio-greeting answer without <c>"lmstudio": true</c> into a 503, so YARP's own policy sees a failure.
/// </summary>
internal sealed class GreetingCheckHandler : DelegatingHandler
{
    public const string Path = "/lmstudio-greeting";

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        if (request.RequestUri?.AbsolutePath != Path || !response.IsSuccessStatusCode) return response;

        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (body.Replace(" ", "", StringComparison.Ordinal).Contains("\"lmstudio\":true", StringComparison.Ordinal)) return response;
        response.Dispose();
        return new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { RequestMessage = request };
    }
}

/// <summary>The HTTP client YARP creates for the cluster (used for its health probes), with the greeting check inside.</summary>
internal sealed class HealthProbeClientFactory : ForwarderHttpClientFactory
{
    protected override HttpMessageHandler WrapHandler(ForwarderHttpClientContext context, HttpMessageHandler handler) =>
        new GreetingCheckHandler { InnerHandler = base.WrapHandler(context, handler) };
}
