namespace LmsProxy.Diagnostics;

/// <summary>
/// The proxy's own server-sent event streams (GET /events, GET /activity/stream): the headers that keep
/// intermediaries from buffering them, a first comment so the reader knows it is connected, and one event per write.
/// </summary>
internal static class ServerSentEvents
{
    public static async Task BeginAsync(HttpResponse response, string hello, CancellationToken cancellationToken)
    {
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.WriteAsync($": {hello}\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>One event; <paramref name="flush"/> false when more are ready to go in the same write.</summary>
    public static async Task WriteAsync(HttpResponse response, string name, string data, CancellationToken cancellationToken, bool flush = true)
    {
        await response.WriteAsync($"event: {name}\ndata: {data}\n\n", cancellationToken);
        if (flush) await response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>A comment, so that a proxy between here and the reader sees the stream is alive.</summary>
    public static async Task CommentAsync(HttpResponse response, string text, CancellationToken cancellationToken)
    {
        await response.WriteAsync($": {text}\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
