using System.Text;
using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Scheduling;
using Microsoft.AspNetCore.Http.Features;

namespace LmsProxy.Proxy;

/// <summary>
/// Keeps a held request alive (opt-in: LmsProxy:StreamKeepAlive for streams, LmsProxy:NonStreamingKeepAlive for the
/// rest). Once the request has been held for KeepAliveAfter, it answers 200 at once (text/event-stream, or
/// application/json) and writes a no-op that fits the protocol every KeepAliveInterval, until the real answer can go:
/// for a stream an SSE comment with the wait's state (WaitText), a reasoning delta or an Anthropic ping; for JSON a
/// space (JSON allows leading whitespace). From then on YARP cannot forward (the response has started), so the
/// caller streams the answer itself (<see cref="ProxyHandler"/>), and a failure arrives as an in-stream error event.
/// A gate keeps the no-ops and the real answer from interleaving.
/// </summary>
internal sealed class StreamKeepAlive : IAsyncDisposable
{
    private readonly HttpContext _context;
    private readonly StreamProtocol _protocol;
    private readonly StreamKeepAliveMode _mode;
    private readonly string _model;
    private readonly TimeProvider _time;
    private readonly long _started;
    private readonly TimeSpan _interval;
    private readonly bool _json;
    private readonly Func<WaitState?>? _describe;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private volatile bool _committed;

    private StreamKeepAlive(HttpContext context, StreamProtocol protocol, StreamKeepAliveMode mode, string model, LmsProxyOptions options, TimeProvider time,
        bool json, Func<WaitState?>? describe)
    {
        _interval = options.Holding.KeepAliveInterval;
        _json = json;
        _describe = describe;
        _context = context;
        _protocol = protocol;
        _mode = mode;
        _model = model;
        _time = time;
        _started = time.GetTimestamp();
        _loop = RunAsync(options.Holding.KeepAliveAfter);
    }

    /// <summary>Whether the 200 and its headers went out: the answer must now stream through <see cref="WriteAsync"/>.</summary>
    public bool Committed => _committed;

    public StreamProtocol Protocol => _protocol;

    /// <summary>A keep-alive for this request, or null when it asks for none (its mode off, or no no-op fits).</summary>
    /// <param name="describe">The request's wait now (its place, progress, time left), for the comments.</param>
    public static StreamKeepAlive? For(HttpContext context, ModelRequest request, LmsProxyOptions options, TimeProvider time, Func<WaitState?>? describe = null)
    {
        var protocol = StreamProtocols.Of(context.Request.Path);
        if (!request.Stream)
        {
            return options.Holding.NonStreamingKeepAlive ? new StreamKeepAlive(context, protocol, StreamKeepAliveMode.Off, request.RequestedModel, options, time, json: true, describe) : null;
        }
        if (options.Holding.StreamKeepAlive == StreamKeepAliveMode.Off) return null;
        // The Responses API has no no-op event: it gets keep-alives only as SSE comments.
        if (protocol == StreamProtocol.Responses && options.Holding.StreamKeepAlive != StreamKeepAliveMode.Comment) return null;
        return new StreamKeepAlive(context, protocol, options.Holding.StreamKeepAlive, request.RequestedModel, options, time, json: false, describe);
    }

    /// <summary>Takes the response for the caller: no keep-alive is written until <see cref="Release"/>.</summary>
    public Task HoldAsync() => _gate.WaitAsync(_context.RequestAborted);

    /// <summary>Gives the response back: keep-alives go on while the request waits again, or stop for good when <paramref name="final"/>.</summary>
    public void Release(bool final)
    {
        if (final) _stop.Cancel();
        _gate.Release();
    }

    /// <summary>Writes bytes of the real answer (the caller holds the gate).</summary>
    public async Task WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        await _context.Response.Body.WriteAsync(bytes, cancellationToken);
        await _context.Response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>The protocol's own error event, then the end of the stream; for JSON the error body (the caller holds the gate).</summary>
    public async Task WriteErrorAsync(ProxyError error)
    {
        var bytes = _json ? error.Serialize(anthropic: _protocol == StreamProtocol.Messages) : Encoding.UTF8.GetBytes(ErrorEvent(_protocol, error));
        try
        {
            await WriteAsync(bytes, _context.RequestAborted);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The client left; there is no one to tell.
        }
    }

    /// <summary>The protocol's own error event (and the stream's end marker where it has one).</summary>
    public static string ErrorEvent(StreamProtocol protocol, ProxyError error) => protocol switch
    {
        StreamProtocol.Messages => $"event: error\ndata: {Encoding.UTF8.GetString(error.Serialize(anthropic: true))}\n\n",
        StreamProtocol.Responses => $"event: error\ndata: {JsonSerializer.Serialize(new ResponsesErrorEvent("error", error.Code, error.Message, null, 0), ProxyJson.Default.ResponsesErrorEvent)}\n\n",
        StreamProtocol.NativeChat => $"event: error\ndata: {JsonSerializer.Serialize(new NativeErrorEvent("error", new NativeErrorDetail(NativeType(error), error.Message, error.Code)), ProxyJson.Default.NativeErrorEvent)}\n\n",
        _ => $"data: {Encoding.UTF8.GetString(error.Serialize(anthropic: false))}\n\ndata: [DONE]\n\n",
    };

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }

    private async Task RunAsync(TimeSpan after)
    {
        var stop = _stop.Token;
        try
        {
            await Task.Delay(after, _time, stop);
            while (!stop.IsCancellationRequested)
            {
                await _gate.WaitAsync(stop);
                try
                {
                    if (stop.IsCancellationRequested) return;
                    if (!_committed) Commit();
                    await WriteAsync(NoOp(), _context.RequestAborted);
                }
                finally
                {
                    _gate.Release();
                }
                await Task.Delay(_interval, _time, stop);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // Stopped, or the client left: the request's own cancellation ends the wait.
        }
    }

    private void Commit()
    {
        var response = _context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = _json ? "application/json" : "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        response.Headers["X-LmsProxy-Keep-Alive"] = _json ? "whitespace" : _mode.ToString().ToLowerInvariant();
        _context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        _committed = true;
    }

    private byte[] NoOp()
    {
        if (_json) return " "u8.ToArray();
        var waited = _time.GetElapsedTime(_started);
        var state = _describe?.Invoke();
        // An SSE comment line, with no blank line after it: a blank line could make some clients dispatch an empty event.
        var comment = $": {WaitText.Comment(_model, state, waited)}\n";
        if (_protocol == StreamProtocol.Messages) return Encoding.UTF8.GetBytes(comment + "event: ping\ndata: {\"type\": \"ping\"}\n\n");
        var created = _time.GetUtcNow().ToUnixTimeSeconds();
        if (_mode == StreamKeepAliveMode.Chunk && _protocol == StreamProtocol.Chat)
        {
            var chunk = new ChatChunk("chatcmpl-lmsproxy-keepalive", "chat.completion.chunk", created, _model, [new ChatChunkChoice(0, new EmptyDelta(), null, null)]);
            return Encoding.UTF8.GetBytes($"{comment}data: {JsonSerializer.Serialize(chunk, ProxyJson.Default.ChatChunk)}\n\n");
        }
        if (_mode == StreamKeepAliveMode.Reasoning && _protocol == StreamProtocol.Chat)
        {
            var chunk = new ReasoningChunk("chatcmpl-lmsproxy-keepalive", "chat.completion.chunk", created, _model,
                [new ReasoningChoice(0, new ReasoningDelta("assistant", WaitText.Sentence(_model, state, waited)), null, null)]);
            return Encoding.UTF8.GetBytes($"{comment}data: {JsonSerializer.Serialize(chunk, WaitJson.Default.ReasoningChunk)}\n\n");
        }
        return Encoding.UTF8.GetBytes(comment);
    }

    private static string NativeType(ProxyError error) => error.Status switch
    {
        StatusCodes.Status404NotFound => "model_not_found",
        < 500 => "invalid_request",
        _ => "internal_error",
    };
}

/// <summary>The streaming protocols whose no-ops and error events differ.</summary>
internal enum StreamProtocol
{
    Chat,
    Completions,
    Responses,
    Messages,
    NativeChat,
}

internal static class StreamProtocols
{
    public static StreamProtocol Of(PathString path)
    {
        var p = path.Value!.TrimEnd('/');
        if (p.EndsWith("/chat/completions", StringComparison.OrdinalIgnoreCase)) return StreamProtocol.Chat;
        if (p.Equals("/v1/responses", StringComparison.OrdinalIgnoreCase)) return StreamProtocol.Responses;
        if (p.Equals("/v1/messages", StringComparison.OrdinalIgnoreCase)) return StreamProtocol.Messages;
        if (p.Equals("/api/v1/chat", StringComparison.OrdinalIgnoreCase)) return StreamProtocol.NativeChat;
        return StreamProtocol.Completions;
    }
}
