using LmsProxy.Configuration;
using LmsProxy.Proxy;

namespace LmsProxy.Security;

/// <summary>
/// What is refused before anything else looks at a request: a Host the proxy does not answer to (421, DNS
/// rebinding), a request that acts sent by another site's page (403), and an inference body that is not JSON (415:
/// text/plain and form bodies are what a page can send without a CORS preflight).
/// </summary>
internal sealed partial class RequestGuard(RequestDelegate next, ProxySettings settings, HostHeaderGuard hosts, ILoggerFactory loggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("LmsProxy.Security");

    public Task InvokeAsync(HttpContext context)
    {
        var options = settings.Current;
        var request = context.Request;
        // /healthz says nothing but "ok", and container and cluster health checks use whatever name they were given.
        if (hosts.Refused(request, options) is { } host && request.Path != "/healthz")
        {
            return RefuseAsync(context, new ProxyError(StatusCodes.Status421MisdirectedRequest, "host_not_allowed",
                $"LmsProxy does not answer to the name '{host}': a web page could use a name it controls (DNS rebinding) to reach the proxy. "
                + "If clients reach LmsProxy by this name, add it to LmsProxy:AllowedHosts."));
        }
        if (!CrossSiteGuard.Acts(request)) return next(context);
        if (CrossSiteGuard.ForeignSender(request, options) is { } sender)
        {
            return RefuseAsync(context, new ProxyError(StatusCodes.Status403Forbidden, "cross_site_request",
                $"LmsProxy refuses requests from other sites' web pages ({sender}): any page could otherwise run and load models. "
                + "To let a web application use LmsProxy, add its origin to LmsProxy:AllowedOrigins."));
        }
        if (RequestPaths.IsInference(request) && !IsJson(request.ContentType))
        {
            return RefuseAsync(context, new ProxyError(StatusCodes.Status415UnsupportedMediaType, "unsupported_media_type",
                $"The request body must be sent as Content-Type: application/json (got {(string.IsNullOrEmpty(request.ContentType) ? "none" : "'" + request.ContentType + "'")})."));
        }
        return next(context);
    }

    /// <summary>application/json, text/json or a +json type, with or without parameters.</summary>
    public static bool IsJson(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType)) return false;
        var media = contentType.AsSpan();
        if (media.IndexOf(';') is var semicolon and >= 0) media = media[..semicolon];
        media = media.Trim();
        return media.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || media.Equals("text/json", StringComparison.OrdinalIgnoreCase)
            || (media.EndsWith("+json", StringComparison.OrdinalIgnoreCase) && media.StartsWith("application/", StringComparison.OrdinalIgnoreCase));
    }

    private Task RefuseAsync(HttpContext context, ProxyError error)
    {
        // Debug: a page in a loop must not fill the log; the client's console shows the message.
        LogRefused(_logger, context.Request.Method, context.Request.Path, error.Status, error.Code);
        return error.WriteAsync(context);
    }

    [LoggerMessage(EventId = 60, Level = LogLevel.Debug, Message = "Refused {Method} {Path}: {Status} {Code}")]
    private static partial void LogRefused(ILogger logger, string method, string path, int status, string code);
}
