using System.Net;
using System.Net.Http.Headers;
using System.Text;
using LmsProxy.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Gateway;

/// <summary>The proxy is transparent: LM Studio's answers, statuses, headers and bodies pass through unchanged.</summary>
public sealed class PassThroughTests : IAsyncLifetime
{
    // Odd spacing and key order on purpose: a re-serialised body would not match byte for byte.
    private const string V1Models = "{ \"object\":\"list\",  \"data\":[{\"id\":\"qwen/qwen3-8b\",\"object\":\"model\",\"owned_by\":\"organization_owner\"}] }";
    private const string V0Models = "{\"data\":[{\"id\":\"qwen/qwen3-8b\",\"object\":\"model\",\"type\":\"llm\",\"state\":\"loaded\",\"max_context_length\":32768}],   \"object\":\"list\"}";

    private WireMockServer _lmStudio = null!;
    private ProxyApp _proxy = null!;
    private HttpClient _client = null!;

    public Task InitializeAsync()
    {
        _lmStudio = WireMockServer.Start();
        _lmStudio.Given(Request.Create().WithPath("/v1/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody(V1Models));
        _lmStudio.Given(Request.Create().WithPath("/api/v0/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody(V0Models));
        _lmStudio.Given(Request.Create().WithPath("/v1/chat/completions").UsingPost()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody("{\"ok\":true}"));
        _lmStudio.Given(Request.Create().WithPath("/api/v1/models/download/status/job-1").UsingGet())
            .RespondWith(Response.Create().WithStatusCode(401).WithHeader("Content-Type", "application/json").WithBody("{\"error\":\"Invalid API token\"}"));
        _lmStudio.Given(Request.Create().WithPath("/api/v0/models/qwen").UsingGet())
            .RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithHeader("X-Upstream", "yes").WithBody("{\"id\":\"qwen\"}"));
        _proxy = new ProxyApp(new Uri(_lmStudio.Url!));
        _client = _proxy.Client();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _proxy.DisposeAsync();
        _lmStudio.Stop();
    }

    [Fact(Timeout = 15000)]
    public async Task NativeModelList_PassesThroughByteForByte()
    {
        using var response = await _client.GetAsync("/api/v0/models");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Encoding.UTF8.GetBytes(V0Models), await response.Content.ReadAsByteArrayAsync());
    }

    /// <summary>/v1/models gains only a status per model (llama.cpp router's shape, for Open WebUI); LM Studio's fields stay, in their order.</summary>
    [Fact(Timeout = 15000)]
    public async Task OpenAiModelList_KeepsLmStudiosFields_AndGainsOnlyAStatus()
    {
        using var response = await _client.GetAsync("/v1/models");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("{\"object\":\"list\",\"data\":[{\"id\":\"qwen/qwen3-8b\",\"object\":\"model\",\"owned_by\":\"organization_owner\",\"status\":{\"value\":\"loaded\"}}]}", // LM Studio lists it as loaded (V0Models)
            await response.Content.ReadAsStringAsync());
    }

    [Fact(Timeout = 15000)]
    public async Task UpstreamErrorStatusAndBody_PassThrough()
    {
        using var response = await _client.GetAsync("/api/v1/models/download/status/job-1");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("{\"error\":\"Invalid API token\"}", await response.Content.ReadAsStringAsync());
    }

    [Fact(Timeout = 15000)]
    public async Task RequestBody_ArrivesUnchanged()
    {
        var body = "{\"messages\":[{\"role\":\"user\",\"content\":\"héllo \\u2603 \\\"quoted\\\"\"}],\n  \"model\" : \"qwen/qwen3-8b\", \"temperature\":0.7}";

        using var response = await _client.PostAsync("/v1/chat/completions", Json.Body(body));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var forwarded = Assert.Single(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/chat/completions");
        Assert.Equal(body, forwarded.RequestMessage.Body);
    }

    [Fact(Timeout = 15000)]
    public async Task LargeRequestBody_ArrivesWhole_WithItsContentHeaders()
    {
        // Far larger than the connection's write buffer: the held body is sent in several writes after the headers.
        var history = string.Join(",", Enumerable.Range(0, 20_000).Select(i => $"{{\"role\":\"user\",\"content\":\"turn {i} ü\"}}"));
        var body = $"{{\"model\":\"qwen/qwen3-8b\",\"messages\":[{history}]}}";
        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        content.Headers.ContentLanguage.Add("de-CH");

        using var response = await _client.PostAsync("/v1/chat/completions", content);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var forwarded = Assert.Single(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/chat/completions");
        Assert.Equal(body, forwarded.RequestMessage.Body);
        Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(body).ToString(System.Globalization.CultureInfo.InvariantCulture), forwarded.RequestMessage.Headers!["Content-Length"].Single());
        Assert.Equal("application/json; charset=utf-8", forwarded.RequestMessage.Headers["Content-Type"].Single());
        Assert.Equal("de-CH", forwarded.RequestMessage.Headers["Content-Language"].Single());
    }

    [Fact(Timeout = 15000)]
    public async Task QueryAuthorizationAndHeaders_AreForwarded()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v0/models/qwen?detail=full&x=1%202");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-lm-secret123");

        using var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("yes", response.Headers.GetValues("X-Upstream").Single());
        var forwarded = Assert.Single(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/api/v0/models/qwen");
        Assert.Equal("full", forwarded.RequestMessage.Query!["detail"].Single());
        Assert.Equal("1 2", forwarded.RequestMessage.Query!["x"].Single());
        Assert.Equal("Bearer sk-lm-secret123", forwarded.RequestMessage.Headers!["Authorization"].Single());
    }

    [Fact(Timeout = 15000)]
    public async Task UnknownPath_IsAnsweredByTheProxy_NotForwarded()
    {
        using var response = await _client.GetAsync("/admin");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("unknown_path", await response.ErrorCode());
        Assert.DoesNotContain(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/admin");
    }
}
