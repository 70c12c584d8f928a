using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>
/// A forward whose 200 JSON answer the proxy rewrites before the client gets it (the model lists: entries added,
/// filtered by key, given a status). The request goes as the host's own transformer sends it; an answer that is
/// compressed, larger than 16 MiB or not a 200 passes as it is.
/// </summary>
internal abstract class JsonBodyRewriter(HttpTransformer requestTransform) : HttpTransformer
{
    private const int MaxBodyBytes = 16 * 1024 * 1024;

    public override ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken) =>
        requestTransform.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var proceed = await Default.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is not { StatusCode: HttpStatusCode.OK } || proxyResponse.Content.Headers.ContentEncoding.Count > 0 ||
            proxyResponse.Content.Headers.ContentLength > MaxBodyBytes)
        {
            return proceed;
        }
        var original = await proxyResponse.Content.ReadAsByteArrayAsync(cancellationToken);
        var rewritten = Parse(original) is { } root && Rewrite(root) ? System.Text.Encoding.UTF8.GetBytes(root.ToJsonString()) : original;
        httpContext.Response.ContentLength = rewritten.Length;
        await httpContext.Response.Body.WriteAsync(rewritten, cancellationToken);
        return false;
    }

    /// <summary>Changes the answer in place; false when it is not of the expected shape (it then passes as it came).</summary>
    protected abstract bool Rewrite(JsonNode root);

    private static JsonNode? Parse(byte[] body)
    {
        try
        {
            return JsonNode.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
