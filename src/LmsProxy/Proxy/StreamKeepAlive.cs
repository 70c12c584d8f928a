using System.Text;
using System.Text.Json;
using LmsProxy.Configuration;
using Microsoft.AspNetCore.Http.Features;

namespace LmsProxy.Proxy;

/// <summary>
/// Keeps a held streaming request alive (LmsProxy:StreamKeepAlive, opt-in). Once the request has been held for
/// KeepAliveAfter, it answers 200 text/event-stream at once and writes a no-op that fits the protocol every few
/// seconds, until the real answer can stream. From then on YARP cannot forward (the response has started), so the
/// caller streams the answer itself (<see cref="ProxyHandler"/>), and a failure arrives as an in-stream error event.
/// A gate keeps the no-ops and the real answer from interleaving.
/// </summary>
internal sealed class StreamKeepAlive : IAsyncDisposable
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(3);

    private readonly HttpContext _context;
    private readonly StreamProtocol _protocol;
    private readonly StreamKeepAliveMode _mode;
    private readonly string _model;
    private readonly TimeProvider _time;
    private readonly long _started;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private volatile bool _committed;

    private StreamKeepAlive(HttpContext context, StreamProtocol protocol, StreamKeepAliveMode mode, string model, TimeSpan after, TimeProvider time)
    {
        _context = context;
        _protocol = protocol;
        _mode = mode;
        _model = model;
        _time = time;
        _started = time.GetTimestamp();
        _loop = RunAsync(after);
    }

    /// <summary>Whether the 200 and its headers went out: the answer must now stream through <see cref="WriteAsync"/>.</summary>
    public bool Committed => _committed;

    public StreamProtocol Protocol => _protocol;

    /// <summary>A keep-alive for this request, or null when it asks for none (not streaming, mode off, or no no-op fits).</summary>
    public static StreamKeepAlive? For(HttpContext context, ModelRequest request, LmsProxyOptions options, TimeProvider time)
    {
        if (!request.Stream || options.Holding.StreamKeepAlive == StreamKeepAliveMode.Off) return null;
        var protocol = StreamProtocols.Of(context.Request.Path);
        // The Responses API has no no-op event: it gets keep-alives only as SSE comments.
        if (protocol == StreamProtocol.Responses && options.Holding.StreamKeepAlive != StreamKeepAliveMode.Comment) return null;
        return new StreamKeepAlive(context, protocol, options.Holding.StreamKeepAlive, request.RequestedModel, options.Holding.KeepAliveAfter, time);
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

    /// <summary>The protocol's own error event, then the end of the stream (the caller holds the gate).</summary>
    public async Task WriteErrorAsync(ProxyError error)
    {
        var text = ErrorEvent(_protocol, error);
        try
        {
            await WriteAsync(Encoding.UTF8.GetBytes(text), _context.RequestAborted);
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
                await Task.Delay(Interval, _time, stop);
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
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        response.Headers["X-LmsProxy-Keep-Alive"] = _mode.ToString().ToLowerInvariant();
        _context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        _committed = true;
    }

    private byte[] NoOp()
    {
        var seconds = (int)_time.GetElapsedTime(_started).TotalSeconds;
        if (_protocol == StreamProtocol.Messages) return "event: ping\ndata: {\"type\": \"ping\"}\n\n"u8.ToArray();
        if (_mode == StreamKeepAliveMode.Chunk && _protocol == StreamProtocol.Chat)
        {
            var chunk = new ChatChunk("chatcmpl-lmsproxy-keepalive", "chat.completion.chunk", _time.GetUtcNow().ToUnixTimeSeconds(), _model,
                [new ChatChunkChoice(0, new EmptyDelta(), null, null)]);
            return Encoding.UTF8.GetBytes($"data: {JsonSerializer.Serialize(chunk, ProxyJson.Default.ChatChunk)}\n\n");
        }
        // An SSE comment line, with no blank line after it: a blank line could make some clients dispatch an empty event.
        return Encoding.UTF8.GetBytes($": loading {_model} {seconds}s\n");
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
