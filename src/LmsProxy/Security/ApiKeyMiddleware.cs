using LmsProxy.Configuration;
using LmsProxy.Keys;
using LmsProxy.Proxy;

namespace LmsProxy.Security;

/// <summary>
/// Inbound API keys (LmsProxy:Keys and LmsProxy:ApiKeys, see Keys/). When any are set, every request needs
/// `Authorization: Bearer &lt;key&gt;` (or `x-api-key: &lt;key&gt;`, as Anthropic clients send). /healthz and /readyz
/// stay open; /, /status and /metrics are open only with LmsProxy:OpenStatus. The caller's key becomes the request's
/// User (one principal per key, made once). Operator actions need a key with Role operator: an inference key gets 403.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, ProxySettings settings, KeyRegistry keys, AuthFailures failures, TimeProvider time)
{
    public Task InvokeAsync(HttpContext context)
    {
        var options = settings.Current;
        if (!KeyRegistry.Enabled(options) || IsOpen(context.Request.Path, options)) return next(context);
        if (Presented(context.Request) is { } presented && keys.Find(presented, options) is { } key)
        {
            context.User = key.Principal;
            if (!key.IsOperator && OperatorOnly(context.Request) is { } action)
            {
                return new ProxyError(StatusCodes.Status403Forbidden, "operator_required",
                    $"{action} needs a key with Role operator (LmsProxy:Keys:<name>:Role); the key '{key.Name}' is an inference key.").WriteAsync(context);
            }
            if (context.Request.Headers.Upgrade.Count > 0 && !key.IsOperator && !key.Unrestricted)
            {
                return new ProxyError(StatusCodes.Status403Forbidden, "sdk_channel_not_allowed",
                    $"The key '{key.Name}' has a model list or limits, which the proxy cannot apply inside LM Studio's SDK channel (WebSocket); use the HTTP API (/v1/...).").WriteAsync(context);
            }
            return next(context);
        }
        if (IsOpenActivity(context.Request, options)) return next(context);
        return RefuseAsync(context);
    }

    private async Task RefuseAsync(HttpContext context)
    {
        var delay = failures.Failed(context.Connection.RemoteIpAddress);
        if (delay > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(delay, time, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        await new ProxyError(StatusCodes.Status401Unauthorized, "invalid_api_key",
            "Missing or invalid API key: send it as 'Authorization: Bearer <key>' (LmsProxy:Keys or LmsProxy:ApiKeys).").WriteAsync(context);
    }

    /// <summary>What the request does that only an operator may, or null: the proxy's actions, and LM Studio's model management.</summary>
    private static string? OperatorOnly(HttpRequest request)
    {
        if (!HttpMethods.IsPost(request.Method) && !HttpMethods.IsDelete(request.Method)) return null;
        var path = request.Path;
        if (path.StartsWithSegments("/models")) return "Loading, unloading and pinning models (POST /models/...)";
        if (path.StartsWithSegments("/activity")) return "Cancelling a request";
        return RequestPaths.Classify(request) == RequestKind.ModelControl || path.StartsWithSegments("/api/v1/models/download", StringComparison.OrdinalIgnoreCase)
            ? $"{request.Method} {path}"
            : null;
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
}
