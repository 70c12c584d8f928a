using System.Net;
using System.Net.WebSockets;
using System.Text;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Security;

/// <summary>
/// A web page the user visits must not drive the GPU box: cross-site requests that act (inference, loads, operator
/// actions, WebSocket upgrades) are refused unless LmsProxy:AllowedOrigins lists the page's origin, and inference
/// bodies must be JSON (a text/plain POST needs no CORS preflight). SDKs send no Origin and are not affected.
/// </summary>
public sealed class CrossSiteTests
{
    private const string Model = "qwen/qwen3-8b";
    private const string Evil = "http://evil.example";

    private static Task<GateEnvironment> StartAsync(Dictionary<string, string?>? settings = null)
    {
        var all = new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" };
        foreach (var (key, value) in settings ?? []) all[key] = value;
        return GateEnvironment.StartAsync(new SimulatorOptions(), all);
    }

    private static string ChatJson => """{"model":"qwen/qwen3-8b","messages":[{"role":"user","content":"hi"}]}""";

    private static HttpRequestMessage Post(string path, string? origin, string contentType = "application/json", string? body = null, string? fetchSite = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body ?? ChatJson, Encoding.UTF8) };
        request.Content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(contentType);
        if (origin is not null) request.Headers.Add("Origin", origin);
        if (fetchSite is not null) request.Headers.Add("Sec-Fetch-Site", fetchSite);
        return request;
    }

    [Fact(Timeout = 30000)]
    public async Task CrossSiteTextPlainPost_IsRefused_AndNothingIsLoaded()
    {
        await using var env = await StartAsync();
        // What a page's fetch(..., {mode: "no-cors", body: "..."}) sends: no preflight, so the page is not asked first.
        using var request = Post("/v1/chat/completions", Evil, "text/plain;charset=UTF-8", fetchSite: "cross-site");

        using var response = await env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("cross_site_request", await response.ErrorCode());
        var message = await response.ErrorMessage();
        Assert.Contains(Evil, message);
        Assert.Contains("LmsProxy:AllowedOrigins", message);
        Assert.Equal(0, env.Simulator.State.TotalLoads);
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Theory(Timeout = 30000)]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData("multipart/form-data; boundary=x")]
    [InlineData(null)]
    public async Task InferenceBodyThatIsNotJson_Gets415_EvenWithoutAnOrigin(string? contentType)
    {
        await using var env = await StartAsync();
        using var request = Post("/v1/chat/completions", origin: null);
        if (contentType is null) request.Content!.Headers.ContentType = null;
        else request.Content!.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(contentType);

        using var response = await env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Equal("unsupported_media_type", await response.ErrorCode());
        Assert.Contains("application/json", await response.ErrorMessage());
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Fact(Timeout = 30000)]
    public async Task AnthropicRoute_RefusesInAnthropicsShape()
    {
        await using var env = await StartAsync();
        const string body = """{"model":"qwen/qwen3-8b","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""";
        using var crossSite = Post("/v1/messages", Evil, body: body);
        using var plain = Post("/v1/messages", null, "text/plain", body);

        using var refused = await env.Client.SendAsync(crossSite);
        using var unsupported = await env.Client.SendAsync(plain);

        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        var error = await refused.ReadJson();
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal("permission_error", error.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("LmsProxy:AllowedOrigins", error.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, unsupported.StatusCode);
        Assert.Equal("invalid_request_error", (await unsupported.ReadJson()).GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Theory(Timeout = 30000)]
    [InlineData("/api/v1/models/load", """{"model":"qwen/qwen3-8b"}""")]
    [InlineData("/api/v1/models/unload", """{"instance_id":"qwen/qwen3-8b"}""")]
    [InlineData("/api/v1/models/download", """{"model":"qwen/qwen3-8b"}""")]
    public async Task CrossSiteLoadAndUnload_AreNotForwardedToLmStudio(string path, string body)
    {
        await using var env = await StartAsync();
        using var request = Post(path, Evil, "text/plain", body);

        using var response = await env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("cross_site_request", await response.ErrorCode());
        Assert.Equal(0, env.Simulator.State.RequestsTo(path));
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Theory(Timeout = 30000)]
    [InlineData("http://evil.example", null)]
    [InlineData("null", null)] // a sandboxed frame or a file:// page
    [InlineData(null, "cross-site")]
    [InlineData("http://127.0.0.1:1", null)] // another port on the same machine: same site, but another origin
    public async Task OperatorAction_FromAnotherOrigin_IsRefused_EvenWithTheActionHeader(string? origin, string? fetchSite)
    {
        await using var env = await StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/models/" + Uri.EscapeDataString(Model) + "/load");
        request.Headers.Add("X-LmsProxy-Action", "1");
        if (origin is not null) request.Headers.Add("Origin", origin);
        if (fetchSite is not null) request.Headers.Add("Sec-Fetch-Site", fetchSite);

        using var response = await env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("LmsProxy:AllowedOrigins", await response.Content.ReadAsStringAsync());
        await Task.Delay(300);
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Fact(Timeout = 30000)]
    public async Task SameOriginNoOriginAndListedOrigins_AreServed()
    {
        await using var env = await StartAsync(new() { ["LmsProxy:AllowedOrigins:0"] = "http://tools.example:3000" });
        var self = env.Proxy.Url.GetLeftPart(UriPartial.Authority);

        using var sameOrigin = await env.Client.SendAsync(Post("/v1/chat/completions", self, fetchSite: "same-origin"));
        using var noOrigin = await env.Client.SendAsync(Post("/v1/chat/completions", null));
        using var listed = await env.Client.SendAsync(Post("/v1/chat/completions", "http://TOOLS.example:3000", fetchSite: "cross-site"));
        using var unlisted = await env.Client.SendAsync(Post("/v1/chat/completions", "http://tools.example:3001"));
        using var read = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Headers = { { "Origin", Evil } } };
        using var crossSiteRead = await env.Client.SendAsync(read);

        Assert.Equal(HttpStatusCode.OK, sameOrigin.StatusCode);
        Assert.Equal(HttpStatusCode.OK, noOrigin.StatusCode);
        Assert.Equal(HttpStatusCode.OK, listed.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, unlisted.StatusCode);
        // Reads are not refused: without CORS headers the browser keeps the answer from the page.
        Assert.Equal(HttpStatusCode.OK, crossSiteRead.StatusCode);
        Assert.Equal(3, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task AllowedOriginsStar_AllowsEveryOrigin()
    {
        await using var env = await StartAsync(new() { ["LmsProxy:AllowedOrigins:0"] = "*" });

        using var response = await env.Client.SendAsync(Post("/v1/chat/completions", Evil, fetchSite: "cross-site"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task WebSocketUpgrade_WithAForeignOrigin_IsRefused()
    {
        await using var env = await StartAsync();
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.SetRequestHeader("Origin", Evil);

        await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(new Uri($"ws://{env.Proxy.Url.Authority}/llm"), CancellationToken.None));

        Assert.Equal(HttpStatusCode.Forbidden, socket.HttpStatusCode);
        Assert.Equal(0, env.Simulator.State.RequestsTo("/llm"));

        // The page served by the proxy itself may (same origin).
        using var own = new ClientWebSocket();
        own.Options.SetRequestHeader("Origin", env.Proxy.Url.GetLeftPart(UriPartial.Authority));
        await own.ConnectAsync(new Uri($"ws://{env.Proxy.Url.Authority}/llm"), CancellationToken.None);
        Assert.Equal(WebSocketState.Open, own.State);
        await own.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }
}
