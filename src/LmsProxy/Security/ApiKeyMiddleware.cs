using System.Security.Cryptography;
using System.Text;
using LmsProxy.Configuration;
using LmsProxy.Proxy;

namespace LmsProxy.Security;

/// <summary>
/// Inbound API keys (LmsProxy:ApiKeys). When any are set, every request needs `Authorization: Bearer &lt;key&gt;`
/// (or `x-api-key: &lt;key&gt;`, as Anthropic clients send). /healthz and /readyz stay open; /, /status and
/// /metrics are open only with LmsProxy:OpenStatus. Keys are compared as SHA-256 digests in constant time.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, ProxySettings settings)
{
    private (LmsProxyOptions Options, byte[][] Digests) _keys = (null!, []);

    public Task InvokeAsync(HttpContext context)
    {
        var options = settings.Current;
        if (options.Access.ApiKeys.Count == 0 || IsOpen(context.Request.Path, options) || IsOpenActivity(context.Request, options) || Presented(context.Request) is { } key && IsKnown(key, options))
        {
            return next(context);
        }
        return new ProxyError(StatusCodes.Status401Unauthorized, "invalid_api_key",
            "Missing or invalid API key: send it as 'Authorization: Bearer <key>' (LmsProxy:ApiKeys).").WriteAsync(context);
    }

    private static bool IsOpen(PathString path, LmsProxyOptions options) =>
        path == "/healthz" || path == "/readyz" || (options.Access.OpenStatus && (path == "/" || path == "/status" || path == "/events" || path == "/metrics"));

    // The status page's live table reads these; captured bodies (/activity/{id}) and the cancel stay behind the key.
    private static bool IsOpenActivity(HttpRequest request, LmsProxyOptions options) =>
        options.Access.OpenStatus && HttpMethods.IsGet(request.Method) && (request.Path == "/activity" || request.Path == "/activity/stream" || request.Path == "/usage");

    private static string? Presented(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return authorization[7..].Trim();
        return request.Headers.TryGetValue("x-api-key", out var apiKey) ? apiKey.ToString() : null;
    }

    private bool IsKnown(string presented, LmsProxyOptions options)
    {
        var keys = _keys;
        if (!ReferenceEquals(keys.Options, options))
        {
            keys = (options, [.. options.Access.ApiKeys.Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k)))]);
            _keys = keys;
        }
        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        var match = false;
        foreach (var known in keys.Digests) match |= CryptographicOperations.FixedTimeEquals(digest, known);
        return match;
    }
}
