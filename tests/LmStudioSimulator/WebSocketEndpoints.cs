using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace LmStudioSimulator;

/// <summary>
/// The WebSocket namespaces LM Studio's SDKs and `lms --host` open on the HTTP port (contract §3.2), ws://host:port/llm
/// and so on. The RPC protocol is not simulated: each text message is echoed with a per-connection sequence number,
/// "close-please" makes the server close (1000, "bye"), and a client's close is answered with a close.
/// </summary>
internal static class WebSocketEndpoints
{
    public const string CloseRequest = "close-please";

    private static readonly string[] Namespaces = ["llm", "embedding", "system", "diagnostics", "files", "repository", "runtime", "plugins"];

    /// <summary>How long the server waits for the client to answer its close before giving up on the socket.</summary>
    private static readonly TimeSpan CloseHandshakeTimeout = TimeSpan.FromSeconds(5);

    public static void Map(WebApplication app, SimulatorState state)
    {
        foreach (var ns in Namespaces)
        {
            // A plain HTTP request to a namespace path is just an unknown route to LM Studio's Express server.
            app.Map("/" + ns, context => context.WebSockets.IsWebSocketRequest ? EchoAsync(context, state, ns) : SimulatorApp.UnexpectedEndpoint(context));
        }
    }

    private static async Task EchoAsync(HttpContext context, SimulatorState state, string ns)
    {
        state.ObserveWebSocket(context.Request.Headers.Authorization.FirstOrDefault());
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var aborted = context.RequestAborted;
        var buffer = new byte[4096];
        using var message = new MemoryStream();
        var sequence = 0;
        try
        {
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, aborted);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    state.CountWebSocketClose();
                    await socket.CloseOutputAsync(received.CloseStatus ?? WebSocketCloseStatus.NormalClosure, received.CloseStatusDescription, aborted);
                    return;
                }
                message.Write(buffer, 0, received.Count);
                if (!received.EndOfMessage) continue;
                var bytes = message.ToArray();
                message.SetLength(0);
                if (received.MessageType != WebSocketMessageType.Text) continue;

                var text = Encoding.UTF8.GetString(bytes);
                state.CountWebSocketMessage();
                if (text == CloseRequest)
                {
                    state.CountWebSocketClose();
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(aborted);
                    timeout.CancelAfter(CloseHandshakeTimeout);
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
                    return;
                }
                var echo = JsonSerializer.SerializeToUtf8Bytes(new { @namespace = ns, seq = ++sequence, echo = text });
                await socket.SendAsync(echo, WebSocketMessageType.Text, endOfMessage: true, aborted);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
            // The peer vanished without a close handshake (or the simulator was killed): nothing to answer.
        }
    }
}
