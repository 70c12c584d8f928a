using LmsProxy.Configuration;

namespace LmsProxy.Security;

/// <summary>
/// A web page the user visits can send requests to the proxy (a form, or fetch without a CORS preflight). Reads are
/// safe (without CORS headers the browser keeps the answer from the page), but requests that act are not: inference
/// and model loads, LM Studio's REST routes, the operator actions, WebSocket upgrades. Browsers name the page in
/// Origin (and Sec-Fetch-Site); the proxy refuses such a request unless the page is the proxy's own (same origin)
/// or LmsProxy:AllowedOrigins lists it. Clients that are not browsers (the SDKs, curl) send no Origin.
/// </summary>
internal static class CrossSiteGuard
{
    // The last settings' list, parsed (one proxy per process in practice; a settings change replaces it).
    private static volatile Allowed? _allowed;

    private sealed record Allowed(LmsProxyOptions Options, HashSet<string> Origins, bool Any);

    /// <summary>Whether the request does something: any method but GET, HEAD and OPTIONS, and every protocol upgrade.</summary>
    public static bool Acts(HttpRequest request) =>
        !(HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method))
        || request.Headers.Upgrade.Count > 0;

    /// <summary>The foreign page that sent the request (its origin, or how the browser described it), or null.</summary>
    public static string? ForeignSender(HttpRequest request, LmsProxyOptions options)
    {
        var origin = request.Headers.Origin.ToString();
        if (origin.Length == 0)
        {
            // Browsers send Origin with every request that acts; Sec-Fetch-Site alone is a belt to those braces.
            return string.Equals(request.Headers["Sec-Fetch-Site"].ToString(), "cross-site", StringComparison.OrdinalIgnoreCase) ? "Sec-Fetch-Site: cross-site" : null;
        }
        var normalized = NormalizeOrigin(origin);
        if (normalized is not null && normalized != "*" && IsSameOrigin(normalized, request.Host.Value)) return null;
        var allowed = AllowedFor(options);
        if (allowed.Any || (normalized is not null && allowed.Origins.Contains(normalized))) return null;
        return "Origin: " + origin;
    }

    /// <summary>scheme://host[:port] in lower case without a default port; "*" and "null" as they are; null when not an origin.</summary>
    public static string? NormalizeOrigin(string origin)
    {
        var trimmed = origin.Trim();
        if (trimmed is "*" or "null") return trimmed;
        if (!Uri.TryCreate(trimmed, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)) return null;
        if (uri.AbsolutePath != "/" || uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.UserInfo.Length > 0) return null;
        return uri.GetLeftPart(UriPartial.Authority).ToLowerInvariant();
    }

    /// <summary>The page came from the name and port this request was sent to (the Host check has vetted that name).</summary>
    private static bool IsSameOrigin(string origin, string? host)
    {
        if (string.IsNullOrEmpty(host) || origin == "null") return false;
        var scheme = origin[..origin.IndexOf(':')];
        return NormalizeOrigin(scheme + "://" + host) == origin;
    }

    private static Allowed AllowedFor(LmsProxyOptions options)
    {
        if (_allowed is { } cached && ReferenceEquals(cached.Options, options)) return cached;
        var origins = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in options.Access.AllowedOrigins)
        {
            if (NormalizeOrigin(entry) is { } origin) origins.Add(origin);
        }
        var any = origins.Remove("*");
        return _allowed = new Allowed(options, origins, any);
    }
}
