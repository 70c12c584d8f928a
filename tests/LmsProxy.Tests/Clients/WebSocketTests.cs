using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using LmsProxy.Proxy;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Clients;

/// <summary>
/// LM Studio's SDK namespaces (ws://host:port/llm and the others) through the proxy. The simulated LM Studio echoes each
/// text message with a per-connection sequence number, closes (1000, "bye") when sent "close-please", and answers a
/// client's close with a close.
/// </summary>
public sealed class WebSocketTests
{
    private const string ProxyKey = "sk-lmsproxy-websocket-test";

    /// <summary>What makes the simulated LM Studio close the socket itself (its constant is internal to it).</summary>
    private const string CloseRequest = "close-please";

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private static Task<GateEnvironment> StartAsync(Dictionary<string, string?>? settings = null)
    {
        var all = new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" };
        foreach (var (key, value) in settings ?? []) all[key] = value;
        return GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200) }, all);
    }

    private static Uri Ws(GateEnvironment env, string path) => new($"ws://{env.Proxy.Url.Authority}{path}");

    private static async Task<ClientWebSocket> ConnectAsync(GateEnvironment env, string path, string? bearer = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        if (bearer is not null) socket.Options.SetRequestHeader("Authorization", "Bearer " + bearer);
        using var timeout = new CancellationTokenSource(Patience);
        await socket.ConnectAsync(Ws(env, path), timeout.Token);
        return socket;
    }

    private static async Task SendAsync(ClientWebSocket socket, string text)
    {
        using var timeout = new CancellationTokenSource(Patience);
        await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, endOfMessage: true, timeout.Token);
    }

    /// <summary>The next whole message (or the close frame, with empty text).</summary>
    private static async Task<(WebSocketReceiveResult Last, string Text)> ReceiveAsync(ClientWebSocket socket)
    {
        using var timeout = new CancellationTokenSource(Patience);
        var buffer = new byte[4096];
        using var message = new MemoryStream();
        WebSocketReceiveResult received;
        do
        {
            received = await socket.ReceiveAsync(buffer, timeout.Token);
            message.Write(buffer, 0, received.Count);
        }
        while (!received.EndOfMessage && received.MessageType != WebSocketMessageType.Close);
        return (received, Encoding.UTF8.GetString(message.ToArray()));
    }

    [Fact(Timeout = 60000)]
    public async Task Messages_GoBothWays_InOrder()
    {
        await using var env = await StartAsync();
        using var socket = await ConnectAsync(env, "/llm");
        string[] sent = ["one", "two", """{"type":"rpcCall","endpoint":"listLoaded"}""", "four", "five"];

        // All sent before any is read: order must hold across the proxy in both directions.
        foreach (var text in sent) await SendAsync(socket, text);
        var echoes = new List<JsonElement>();
        for (var i = 0; i < sent.Length; i++)
        {
            var (last, text) = await ReceiveAsync(socket);
            Assert.Equal(WebSocketMessageType.Text, last.MessageType);
            echoes.Add(JsonDocument.Parse(text).RootElement.Clone());
        }

        Assert.Equal(HttpStatusCode.SwitchingProtocols, socket.HttpStatusCode);
        Assert.Equal([1, 2, 3, 4, 5], echoes.Select(e => e.GetProperty("seq").GetInt32()));
        Assert.Equal(sent, echoes.Select(e => e.GetProperty("echo").GetString()));
        Assert.All(echoes, e => Assert.Equal("llm", e.GetProperty("namespace").GetString()));
        Assert.Equal(sent.Length, env.Simulator.State.WebSocketMessages);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }

    [Fact(Timeout = 60000)]
    public async Task EveryNamespace_IsForwarded()
    {
        await using var env = await StartAsync();

        foreach (var ns in RequestPaths.WebSocketNamespaces)
        {
            using var socket = await ConnectAsync(env, "/" + ns);
            await SendAsync(socket, "hello " + ns);
            var (_, text) = await ReceiveAsync(socket);
            var echo = JsonDocument.Parse(text).RootElement;
            Assert.Equal(ns, echo.GetProperty("namespace").GetString());
            Assert.Equal("hello " + ns, echo.GetProperty("echo").GetString());
            Assert.Equal(1, echo.GetProperty("seq").GetInt32());
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }
        Assert.Equal(8, env.Simulator.State.WebSocketMessages);
    }

    [Fact(Timeout = 60000)]
    public async Task ClientClose_ReachesLmStudio_AndItsCloseComesBack()
    {
        await using var env = await StartAsync();
        using var socket = await ConnectAsync(env, "/llm");
        await SendAsync(socket, "before closing");
        await ReceiveAsync(socket);

        using var timeout = new CancellationTokenSource(Patience);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "client done", timeout.Token);

        Assert.Equal(WebSocketState.Closed, socket.State);
        // LM Studio answered the close with the status and reason it was sent.
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        Assert.Equal("client done", socket.CloseStatusDescription);
        await Eventually.Until(() => env.Simulator.State.WebSocketCloses == 1, Patience);
    }

    [Fact(Timeout = 60000)]
    public async Task ServerClose_ReachesTheClient_WithItsStatusAndReason()
    {
        await using var env = await StartAsync();
        using var socket = await ConnectAsync(env, "/llm");

        await SendAsync(socket, CloseRequest);
        var (close, _) = await ReceiveAsync(socket);

        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, close.CloseStatus);
        Assert.Equal("bye", close.CloseStatusDescription);
        Assert.Equal(WebSocketState.CloseReceived, socket.State);
        using var timeout = new CancellationTokenSource(Patience);
        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "ok", timeout.Token);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.Equal(1, env.Simulator.State.WebSocketCloses);
    }

    [Fact(Timeout = 60000)]
    public async Task WithApiKeys_AnUpgradeWithoutTheKey_IsRefusedWith401()
    {
        await using var env = await StartAsync(new() { ["LmsProxy:ApiKeys:0"] = ProxyKey });

        foreach (var bearer in new[] { null, "sk-wrong-key-of-some-length" })
        {
            using var socket = new ClientWebSocket();
            socket.Options.CollectHttpResponseDetails = true;
            if (bearer is not null) socket.Options.SetRequestHeader("Authorization", "Bearer " + bearer);
            await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(Ws(env, "/llm"), CancellationToken.None));
            Assert.Equal(HttpStatusCode.Unauthorized, socket.HttpStatusCode);
        }
        Assert.Null(env.Simulator.State.LastWebSocketAuthorization);
        Assert.Equal(0, env.Simulator.State.WebSocketMessages);
    }

    [Fact(Timeout = 60000)]
    public async Task WithApiKeys_AnUpgradeWithTheKey_Works_AndTheKeyStaysWithTheProxy()
    {
        await using var env = await StartAsync(new() { ["LmsProxy:ApiKeys:0"] = ProxyKey });
        using var socket = await ConnectAsync(env, "/llm", bearer: ProxyKey);

        await SendAsync(socket, "authorised");
        var (_, text) = await ReceiveAsync(socket);

        Assert.Equal(HttpStatusCode.SwitchingProtocols, socket.HttpStatusCode);
        Assert.Equal("authorised", JsonDocument.Parse(text).RootElement.GetProperty("echo").GetString());
        // The client's key is the proxy's: without ForwardClientKey it is not sent on to LM Studio.
        Assert.Equal(1, env.Simulator.State.WebSocketMessages);
        Assert.Null(env.Simulator.State.LastWebSocketAuthorization);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }

    [Fact(Timeout = 60000)]
    public async Task Greeting_IsAnsweredThroughTheProxy()
    {
        await using var env = await StartAsync();

        var before = env.Simulator.State.RequestsTo("/lmstudio-greeting");

        using var response = await env.Client.GetAsync("/lmstudio-greeting");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True((await response.ReadJson()).GetProperty("lmstudio").GetBoolean());
        Assert.True(env.Simulator.State.RequestsTo("/lmstudio-greeting") > before, "the greeting came from LM Studio");
    }

    [Fact(Timeout = 60000)]
    public async Task Greeting_WithApiKeys_NeedsTheKey()
    {
        await using var env = await StartAsync(new() { ["LmsProxy:ApiKeys:0"] = ProxyKey });

        using var without = await env.Client.GetAsync("/lmstudio-greeting");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/lmstudio-greeting") { Headers = { { "Authorization", "Bearer " + ProxyKey } } };
        using var with = await env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Unauthorized, without.StatusCode);
        Assert.Equal("invalid_api_key", await without.ErrorCode());
        Assert.Equal(HttpStatusCode.OK, with.StatusCode);
        Assert.True((await with.ReadJson()).GetProperty("lmstudio").GetBoolean());
    }
}
