using System.Net;
using System.Text;
using LmsProxy.Configuration;
using LmsProxy.Security;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>What a forward learned that the caller must act on (set only when it happens).</summary>
public sealed class ForwardSignal
{
    /// <summary>LM Studio answered "not loaded" and nothing of that answer reached the client.</summary>
    public static readonly ForwardSignal NotLoaded = new();
}

public enum TransformMode
{
    /// <summary>Pass everything through.</summary>
    PassThrough,

    /// <summary>An inference request: hold back LM Studio's "not loaded" answer so the request can be re-sent.</summary>
    Inference,

    /// <summary>A path LM Studio may not know: its 200 "Unexpected endpoint" answer becomes a 404.</summary>
    UnknownPath,
}

/// <summary>
/// One per host and mode, shared by all requests (nothing per request is allocated here). It sends the client's path
/// byte for byte, applies the host's credentials, marks streams unbufferable for a further nginx, and, by mode,
/// holds back a "not loaded" answer or unmasks LM Studio's 200-for-unknown-paths.
/// </summary>
public sealed class UpstreamTransformer(ProxySettings settings, string? hostToken, TransformMode mode) : HttpTransformer
{
    private const int MaxErrorBodyBytes = 64 * 1024;

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await Default.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        KeepRawTarget(httpContext, proxyRequest, destinationPrefix);
        UpstreamCredentials.Apply(proxyRequest, settings.Current, hostToken);
        if (httpContext.Request.Body is WholeBody body) proxyRequest.Options.Set(UpstreamInvoker.WholeBodyKey, body);
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
        var inspect = mode switch
        {
            TransformMode.Inference => status is HttpStatusCode.BadRequest or HttpStatusCode.NotFound,
            TransformMode.UnknownPath => status == HttpStatusCode.OK && proxyResponse.Content.Headers.ContentLength is null or < MaxErrorBodyBytes,
            _ => false,
        };
        if (!inspect) return proceed;

        // Error bodies are small: read the head of it to classify, then either act on it or pass it on whole.
        var stream = await proxyResponse.Content.ReadAsStreamAsync(cancellationToken);
        var head = new byte[MaxErrorBodyBytes];
        var length = 0;
        int read;
        while (length < head.Length && (read = await stream.ReadAsync(head.AsMemory(length), cancellationToken)) > 0) length += read;
        var text = Encoding.UTF8.GetString(head, 0, length);

        if (mode == TransformMode.Inference && IsNotLoadedAnswer(text))
        {
            httpContext.Features.Set(ForwardSignal.NotLoaded);
            return false;
        }
        if (mode == TransformMode.UnknownPath && text.Contains("Unexpected endpoint or method", StringComparison.Ordinal))
        {
            await new ProxyError(StatusCodes.Status404NotFound, "unsupported_endpoint",
                $"LM Studio does not implement {httpContext.Request.Method} {httpContext.Request.Path} (it answered \"Unexpected endpoint or method\" with HTTP 200).").WriteAsync(httpContext);
            return false;
        }
        await httpContext.Response.Body.WriteAsync(head.AsMemory(0, length), cancellationToken);
        await stream.CopyToAsync(httpContext.Response.Body, cancellationToken);
        return false;
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
