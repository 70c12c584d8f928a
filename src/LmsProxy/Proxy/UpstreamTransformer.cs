using System.Buffers;
using System.Net;
using System.Text;
using LmsProxy.Configuration;
using LmsProxy.Security;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>What a forward learned that the caller must act on (set only when it happens).</summary>
internal sealed class ForwardSignal
{
    /// <summary>LM Studio answered "not loaded" and nothing of that answer reached the client.</summary>
    public static readonly ForwardSignal NotLoaded = new();
}

internal enum TransformMode
{
    /// <summary>Pass everything through.</summary>
    PassThrough,

    /// <summary>An inference request: hold back LM Studio's "not loaded" answer so the request can be re-sent.</summary>
    Inference,

    /// <summary>A path LM Studio may not know: its 200 "Unexpected endpoint" answer, or Bionic's 404 or 415, becomes a 404 (F17).</summary>
    UnknownPath,
}

/// <summary>
/// One per host and mode, shared by all requests (nothing per request is allocated here). It sends the client's path
/// byte for byte, applies the host's credentials, marks streams unbufferable for a further nginx, and, by mode,
/// holds back a "not loaded" answer or unmasks LM Studio's 200-for-unknown-paths. A refusal of the proxy's own
/// credentials (401/403 on an inference request, or 200 "Unexpected endpoint" on a path LM Studio serves, F16) becomes
/// a 502 upstream_auth_failed that names the host and its setting.
/// </summary>
internal sealed class UpstreamTransformer(ProxySettings settings, string? hostToken, TransformMode mode, string hostName = "default") : HttpTransformer
{
    private const int MaxErrorBodyBytes = 64 * 1024;

    /// <summary>LM Studio's "Unexpected endpoint" body is under 200 bytes; real answers of known paths are larger or streamed.</summary>
    private const int MaxUnexpectedEndpointBytes = 512;

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await Default.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        KeepRawTarget(httpContext, proxyRequest, destinationPrefix);
        UpstreamCredentials.Apply(proxyRequest, settings.Current, hostToken);
        if (httpContext.Request.Body is WholeBody body) UpstreamInvoker.OfferWholeBody(proxyRequest, body);
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var proceed = await Default.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is null) return proceed;
        if (IsEventStream(proxyResponse))
        {
            httpContext.Response.Headers["X-Accel-Buffering"] = "no";
            return proceed;
        }
        var status = proxyResponse.StatusCode;
        if (mode == TransformMode.UnknownPath && status is HttpStatusCode.NotFound or HttpStatusCode.UnsupportedMediaType)
        {
            await Unsupported(httpContext, $"it answered HTTP {(int)status}").WriteAsync(httpContext);
            return false;
        }
        if (status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden && mode != TransformMode.UnknownPath &&
            (mode == TransformMode.Inference || RequestPaths.IsInference(httpContext.Request)) && SentProxyCredentials(proxyResponse.RequestMessage))
        {
            await AuthFailed(httpContext, proxyResponse, $"HTTP {(int)status} to {httpContext.Request.Method} {httpContext.Request.Path}").WriteAsync(httpContext);
            return false;
        }
        var small = proxyResponse.Content.Headers.ContentLength is < MaxUnexpectedEndpointBytes;
        var inspect = mode switch
        {
            TransformMode.Inference => status is HttpStatusCode.BadRequest or HttpStatusCode.NotFound || (status == HttpStatusCode.OK && small),
            TransformMode.UnknownPath => status == HttpStatusCode.OK && proxyResponse.Content.Headers.ContentLength is null or < MaxErrorBodyBytes,
            _ => status == HttpStatusCode.OK && small,
        };
        if (!inspect) return proceed;

        // Error bodies are small: read the head of it to classify, then either act on it or pass it on whole. The
        // head is a pooled buffer searched as UTF-8 bytes: every small 200 passes here, and a string per answer shows.
        var stream = await proxyResponse.Content.ReadAsStreamAsync(cancellationToken);
        // Sized by Content-Length when known: a short answer inspected for "Unexpected endpoint" costs its own size only.
        var size = proxyResponse.Content.Headers.ContentLength is { } declared and >= 0 and < MaxErrorBodyBytes ? (int)declared : MaxErrorBodyBytes;
        var head = ArrayPool<byte>.Shared.Rent(Math.Max(size, 1));
        try
        {
            var length = 0;
            int read;
            while (length < size && (read = await stream.ReadAsync(head.AsMemory(length, size - length), cancellationToken)) > 0) length += read;
            var text = head.AsMemory(0, length);

            if (mode == TransformMode.Inference && status != HttpStatusCode.OK && IsNotLoadedAnswer(Encoding.UTF8.GetString(text.Span)))
            {
                httpContext.Features.Set(ForwardSignal.NotLoaded);
                return false;
            }
            var unexpectedEndpoint = Loading.UpstreamAuth.IsUnexpectedEndpoint(text.Span);
            if (mode == TransformMode.UnknownPath && unexpectedEndpoint)
            {
                await Unsupported(httpContext, "it answered \"Unexpected endpoint or method\" with HTTP 200").WriteAsync(httpContext);
                return false;
            }
            if (mode != TransformMode.UnknownPath && status == HttpStatusCode.OK && unexpectedEndpoint)
            {
                // A path LM Studio serves, answered as unknown: what it does for a missing or wrong token (F16), never a success.
                await AuthFailed(httpContext, proxyResponse,
                    $"HTTP 200 \"Unexpected endpoint or method\" to {httpContext.Request.Method} {httpContext.Request.Path}, an endpoint it serves unless it is older than that endpoint").WriteAsync(httpContext);
                return false;
            }
            await httpContext.Response.Body.WriteAsync(text, cancellationToken);
            // Read whole already (its Content-Length reached, or the end seen): no copy loop for an empty rest.
            if (length < size || length == proxyResponse.Content.Headers.ContentLength) return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(head);
        }
        await stream.CopyToAsync(httpContext.Response.Body, cancellationToken);
        return false;
    }

    private static ProxyError Unsupported(HttpContext context, string how) => new(StatusCodes.Status404NotFound, "unsupported_endpoint",
        $"LM Studio does not implement {context.Request.Method} {context.Request.Path} ({how}).");

    private ProxyError AuthFailed(HttpContext context, HttpResponseMessage response, string how)
    {
        var url = response.RequestMessage?.RequestUri is { } uri ? new Uri(uri.GetLeftPart(UriPartial.Authority)) : new Uri("http://unknown");
        var tokenSent = response.RequestMessage?.Headers.Authorization is not null || response.RequestMessage?.Headers.Contains("x-api-key") == true;
        return new ProxyError(StatusCodes.Status502BadGateway, Loading.UpstreamAuth.Code, Loading.UpstreamAuth.Message(hostName, url, tokenSent, how));
    }

    /// <summary>Whether LM Studio judged the proxy's credentials (the host's token, or none), not a client's own key passed on.</summary>
    private bool SentProxyCredentials(HttpRequestMessage? request)
    {
        if (request is null) return true;
        if (request.Headers.Contains("x-api-key")) return false;
        var auth = request.Headers.Authorization;
        return auth is null || (hostToken is { Length: > 0 } token && auth.Scheme == "Bearer" && auth.Parameter == token);
    }

    /// <summary>Reads the raw header, without parsing it into a MediaTypeHeaderValue (that costs every response).</summary>
    private static bool IsEventStream(HttpResponseMessage response) =>
        response.Content.Headers.NonValidated.TryGetValues("Content-Type", out var values) &&
        values.ToString().StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase);

    /// <summary>LM Studio's "No models loaded" refusal (400 or 404, by version) and its unload messages: contract §2.1, capacity-signals §6.</summary>
    public static bool IsNotLoadedAnswer(string body) =>
        body.Contains("No models loaded", StringComparison.OrdinalIgnoreCase)
        || body.Contains("model is not loaded", StringComparison.OrdinalIgnoreCase)
        || body.Contains("Model is unloaded", StringComparison.OrdinalIgnoreCase)
        || body.Contains("Model unloaded", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// YARP rebuilds the path from ASP.NET Core's decoded form, which turns %2F into %252F. The client's own request
    /// target is sent instead, byte for byte, whenever it has a percent-escape (without one, both are the same).
    /// A target with dot segments keeps the normalized path the proxy routed on.
    /// </summary>
    private static void KeepRawTarget(HttpContext context, HttpRequestMessage proxyRequest, string destinationPrefix)
    {
        if (RawTarget(context) is { } raw) proxyRequest.RequestUri = new Uri(destinationPrefix + raw, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });
    }

    /// <summary>Where a request goes on a host, as the client wrote it (see <see cref="KeepRawTarget"/>).</summary>
    public static Uri TargetUri(HttpContext context, string destinationPrefix) => RawTarget(context) is { } raw
        ? new Uri(destinationPrefix + raw, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true })
        : new Uri(destinationPrefix + context.Request.Path.ToUriComponent() + context.Request.QueryString.ToUriComponent());

    private static string? RawTarget(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(raw) || raw[0] != '/' || !raw.Contains('%')) return null;
        var query = raw.IndexOf('?');
        var path = query < 0 ? raw : raw[..query];
        return path.Contains("/.", StringComparison.Ordinal) || path.Contains("%2e", StringComparison.OrdinalIgnoreCase) ? null : raw;
    }
}
