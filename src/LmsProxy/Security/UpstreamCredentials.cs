using System.Net.Http.Headers;
using LmsProxy.Configuration;

namespace LmsProxy.Security;

/// <summary>What credentials a forwarded request carries to LM Studio.</summary>
internal static class UpstreamCredentials
{
    /// <summary>
    /// With inbound keys on, the client's key is the proxy's, not LM Studio's: it is dropped unless ForwardClientKey.
    /// A request left without credentials carries the host's own token (sent to that host only), when set.
    /// </summary>
    public static void Apply(HttpRequestMessage request, LmsProxyOptions options, string? hostToken)
    {
        if (options.Access.ApiKeys.Count > 0 && !options.Access.ForwardClientKey)
        {
            request.Headers.Authorization = null;
            request.Headers.Remove("x-api-key");
        }
        if (hostToken is { Length: > 0 } token && request.Headers.Authorization is null && !request.Headers.Contains("x-api-key"))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }
}
