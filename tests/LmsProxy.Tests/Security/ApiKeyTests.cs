using System.Net;
using System.Net.Http.Headers;
using LmsProxy.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Security;

/// <summary>Inbound API keys: who gets in, which endpoints stay open, and what LM Studio receives.</summary>
public sealed class ApiKeyTests : IAsyncLifetime
{
    private const string Key = "proxy-key-0123456789";
    private WireMockServer _lmStudio = null!;

    public Task InitializeAsync()
    {
        _lmStudio = WireMockServer.Start();
        _lmStudio.Given(Request.Create().WithPath("/api/v1/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json")
            .WithBody("{\"models\":[{\"type\":\"llm\",\"key\":\"m\",\"loaded_instances\":[{\"id\":\"m\"}]}]}"));
        _lmStudio.Given(Request.Create().WithPath("/v1/chat/completions").UsingPost()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody("{\"ok\":true}"));
        _lmStudio.Given(Request.Create().WithPath("/v1/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody("{\"object\":\"list\",\"data\":[]}"));
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        _lmStudio.Stop();
        return Task.CompletedTask;
    }

    private ProxyApp Proxy(params (string Key, string Value)[] extra)
    {
        var settings = new Dictionary<string, string?> { ["LmsProxy:ApiKeys:0"] = "another-key-xyz", ["LmsProxy:ApiKeys:1"] = Key };
        foreach (var (k, v) in extra) settings[k] = v;
        return new ProxyApp(new Uri(_lmStudio.Url!), settings);
    }

    [Theory(Timeout = 15000)]
    [InlineData(null)]
    [InlineData("Bearer wrong-key-0123456789")]
    [InlineData("Bearer proxy-key-012345678")]
    [InlineData("Basic cHJveHk6a2V5")]
    public async Task RequestWithoutTheRightKey_Gets401_AndReachesNothing(string? authorization)
    {
        await using var proxy = Proxy();
        using var client = proxy.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("m") };
        if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_api_key", await response.ErrorCode());
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        Assert.DoesNotContain(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/chat/completions");
    }

    [Fact(Timeout = 15000)]
    public async Task RightKey_GetsIn_AndIsNotForwarded_ButTheUpstreamTokenIs()
    {
        await using var proxy = Proxy(("LmsProxy:UpstreamApiKey", "sk-lm-upstream"));
        using var client = proxy.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("m") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var forwarded = Assert.Single(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/chat/completions");
        Assert.Equal("Bearer sk-lm-upstream", forwarded.RequestMessage.Headers!["Authorization"].Single());
    }

    [Fact(Timeout = 15000)]
    public async Task XApiKeyHeader_IsAccepted_AndStripped()
    {
        await using var proxy = Proxy();
        using var client = proxy.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("m") };
        request.Headers.Add("x-api-key", Key);

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var forwarded = Assert.Single(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/chat/completions");
        Assert.False(forwarded.RequestMessage.Headers!.ContainsKey("x-api-key"));
        Assert.False(forwarded.RequestMessage.Headers!.ContainsKey("Authorization"));
    }

    [Fact(Timeout = 15000)]
    public async Task ForwardClientKey_PassesTheClientsKeyOn()
    {
        await using var proxy = Proxy(("LmsProxy:ForwardClientKey", "true"));
        using var client = proxy.Client();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);

        using var response = await client.GetAsync("/v1/models");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var forwarded = Assert.Single(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/models");
        Assert.Equal("Bearer " + Key, forwarded.RequestMessage.Headers!["Authorization"].Single());
    }

    [Theory(Timeout = 15000)]
    [InlineData("/healthz", false, HttpStatusCode.OK)]
    [InlineData("/readyz", false, HttpStatusCode.OK)]
    [InlineData("/status", false, HttpStatusCode.Unauthorized)]
    [InlineData("/metrics", false, HttpStatusCode.Unauthorized)]
    [InlineData("/", false, HttpStatusCode.Unauthorized)]
    [InlineData("/status", true, HttpStatusCode.OK)]
    [InlineData("/metrics", true, HttpStatusCode.OK)]
    [InlineData("/", true, HttpStatusCode.OK)]
    public async Task OperatorEndpoints_FollowTheDocumentedRule(string path, bool openStatus, HttpStatusCode expected)
    {
        await using var proxy = Proxy(("LmsProxy:OpenStatus", openStatus ? "true" : "false"));
        using var client = proxy.Client();

        using var response = await client.GetAsync(path);

        Assert.Equal(expected, response.StatusCode);
    }

    [Fact(Timeout = 15000)]
    public async Task NoKeysConfigured_EverythingIsOpen()
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));
        using var client = proxy.Client();

        using var chat = await client.PostAsync("/v1/chat/completions", Json.Chat("m"));
        using var status = await client.GetAsync("/status");

        Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
        Assert.Equal(HttpStatusCode.OK, status.StatusCode);
    }
}
