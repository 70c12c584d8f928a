using System.Diagnostics;
using System.Net;
using System.Text;
using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Security;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>
/// Passes LM Studio's response through, with two exceptions: streamed responses are marked unbufferable for a
/// further nginx, and (on inference requests) a "No models loaded" answer is held back so the request can be re-sent.
/// </summary>
public sealed class UpstreamResponseTransformer(ProxyMetrics metrics, LmsProxyOptions options, bool detectNotLoaded) : HttpTransformer
{
    private const int MaxErrorBodyBytes = 64 * 1024;
    private long _sentAt;

    /// <summary>True when LM Studio answered "not loaded" and nothing of that answer reached the client.</summary>
    public bool NotLoaded { get; private set; }

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await Default.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        UpstreamCredentials.Apply(proxyRequest, options);
        _sentAt = Stopwatch.GetTimestamp();
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var proceed = await Default.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is null) return proceed;
        metrics.UpstreamResponded(Stopwatch.GetElapsedTime(_sentAt));

        if (proxyResponse.Content.Headers.ContentType?.MediaType == "text/event-stream")
        {
            httpContext.Response.Headers["X-Accel-Buffering"] = "no";
        }
        if (!detectNotLoaded || proxyResponse.StatusCode is not (HttpStatusCode.BadRequest or HttpStatusCode.NotFound)) return proceed;

        // Error bodies are small: read the head of it to classify, then either drop it or pass it on whole.
        var stream = await proxyResponse.Content.ReadAsStreamAsync(cancellationToken);
        var head = new byte[MaxErrorBodyBytes];
        var length = 0;
        int read;
        while (length < head.Length && (read = await stream.ReadAsync(head.AsMemory(length), cancellationToken)) > 0) length += read;

        if (IsNotLoadedAnswer(head.AsSpan(0, length)))
        {
            NotLoaded = true;
            return false;
        }
        await httpContext.Response.Body.WriteAsync(head.AsMemory(0, length), cancellationToken);
        await stream.CopyToAsync(httpContext.Response.Body, cancellationToken);
        return false;
    }

    /// <summary>LM Studio's "No models loaded" refusal (400 or 404, by version); see the contract §2.1.</summary>
    public static bool IsNotLoadedAnswer(ReadOnlySpan<byte> body)
    {
        var text = Encoding.UTF8.GetString(body);
        return text.Contains("No models loaded", StringComparison.OrdinalIgnoreCase)
            || text.Contains("model is not loaded", StringComparison.OrdinalIgnoreCase);
    }
}
