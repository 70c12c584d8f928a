using System.Net.Http.Headers;
using LmsProxy.Configuration;

namespace LmsProxy.Security;

/// <summary>What credentials a forwarded request carries to LM Studio.</summary>
public static class UpstreamCredentials
{
    /// <summary>
    /// With inbound keys on, the client's key is the proxy's, not LM Studio's: it is dropped unless ForwardClientKey.
    /// A request left without credentials carries UpstreamApiKey, when set.
    /// </summary>
    public static void Apply(HttpRequestMessage request, LmsProxyOptions options)
    {
        if (options.ApiKeys.Count > 0 && !options.ForwardClientKey)
        {
            request.Headers.Authorization = null;
            request.Headers.Remove("x-api-key");
        }
        if (request.Headers.Authorization is null && options.UpstreamApiKey is { Length: > 0 } token)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }
}
