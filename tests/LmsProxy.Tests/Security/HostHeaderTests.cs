using System.Net;
using LmsProxy.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Security;

/// <summary>
/// DNS rebinding: an attacker's name that resolves to the proxy makes the attacker's page same-origin with it. The
/// proxy answers only to names public DNS cannot hand out (IP literals, localhost, single-label and local names), the
/// names it listens on, and LmsProxy:AllowedHosts.
/// </summary>
public sealed class HostHeaderTests : IAsyncLifetime
{
    private WireMockServer _lmStudio = null!;

    public Task InitializeAsync()
    {
        _lmStudio = WireMockServer.Start();
        _lmStudio.Given(Request.Create().WithPath("/api/v1/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json")
            .WithBody("{\"models\":[{\"type\":\"llm\",\"key\":\"m\",\"loaded_instances\":[{\"id\":\"m\"}]}]}"));
        _lmStudio.Given(Request.Create().WithPath("/v1/chat/completions").UsingPost()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody("{\"ok\":true}"));
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        _lmStudio.Stop();
        return Task.CompletedTask;
    }

    private static async Task<HttpResponseMessage> SendAsync(ProxyApp proxy, HttpMethod method, string path, string host, HttpContent? content = null)
    {
        using var client = proxy.Client();
        using var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Host = host;
        request.Headers.Add("X-LmsProxy-Action", "1");
        return await client.SendAsync(request);
    }

    [Theory(Timeout = 15000)]
    [InlineData("GET", "/status")]
    [InlineData("GET", "/")]
    [InlineData("GET", "/metrics")]
    [InlineData("POST", "/models/m/pin")]
    [InlineData("POST", "/v1/chat/completions")]
    [InlineData("GET", "/v1/models")]
    public async Task RebindingHost_Gets421_WithAMessageNamingTheSetting(string method, string path)
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));

        using var response = await SendAsync(proxy, new HttpMethod(method), path, "evil.example.com:" + proxy.Url.Port, method == "POST" ? Json.Chat("m") : null);

        Assert.Equal(HttpStatusCode.MisdirectedRequest, response.StatusCode);
        Assert.Equal("host_not_allowed", await response.ErrorCode());
        var message = await response.ErrorMessage();
        Assert.Contains("evil.example.com", message);
        Assert.Contains("LmsProxy:AllowedHosts", message);
        Assert.DoesNotContain(_lmStudio.LogEntries, e => e.RequestMessage.Path == "/v1/chat/completions");
        Assert.DoesNotContain(proxy.Scheduler.Snapshot().Models, m => m.Pinned);
    }

    [Theory(Timeout = 15000)]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    [InlineData("LOCALHOST.")]
    [InlineData("[::1]")]
    [InlineData("192.168.1.20")]
    [InlineData("app.localhost")]
    public async Task IpLiteralsAndLoopbackNames_AreServed(string host)
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));

        using var response = await SendAsync(proxy, HttpMethod.Post, "/v1/chat/completions", host + ":" + proxy.Url.Port, Json.Chat("m"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>Listening on all interfaces (Docker, a LAN), the proxy cannot know every name clients use.</summary>
    [Theory(Timeout = 15000)]
    [InlineData("gpu-box")] // a single-label name: the LAN's DNS, /etc/hosts, a Docker service name
    [InlineData("gpu-box.local")]
    [InlineData("gpu-box.lan")]
    [InlineData("gpu-box.home.arpa")]
    [InlineData("host.docker.internal")]
    public async Task OnAllInterfaces_NamesPublicDnsCannotGive_AreServed(string host)
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!), new Dictionary<string, string?> { ["urls"] = "http://0.0.0.0:0" });

        using var served = await SendAsync(proxy, HttpMethod.Post, "/v1/chat/completions", host + ":" + proxy.Url.Port, Json.Chat("m"));
        using var refused = await SendAsync(proxy, HttpMethod.Post, "/v1/chat/completions", "gpu-box.example.com:" + proxy.Url.Port, Json.Chat("m"));

        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        Assert.Equal(HttpStatusCode.MisdirectedRequest, refused.StatusCode);
    }

    /// <summary>On loopback only, a local name could only be one spoofed on the LAN (mDNS, LLMNR) to rebind into it.</summary>
    [Theory(Timeout = 15000)]
    [InlineData("gpu-box")]
    [InlineData("gpu-box.local")]
    public async Task OnLoopbackOnly_OtherLocalNames_AreRefused(string host)
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));

        using var response = await SendAsync(proxy, HttpMethod.Get, "/status", host + ":" + proxy.Url.Port);

        Assert.Equal(HttpStatusCode.MisdirectedRequest, response.StatusCode);
    }

    [Fact(Timeout = 15000)]
    public async Task TheMachinesOwnName_IsServed()
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));

        using var response = await SendAsync(proxy, HttpMethod.Get, "/status", Environment.MachineName + ".local:" + proxy.Url.Port);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory(Timeout = 15000)]
    [InlineData("proxy.example.com", "proxy.example.com", HttpStatusCode.OK)]
    [InlineData("proxy.example.com", "PROXY.example.com:8080", HttpStatusCode.OK)]
    [InlineData("*.example.org", "gpu.example.org", HttpStatusCode.OK)]
    [InlineData("*.example.org", "example.org.evil.com", HttpStatusCode.MisdirectedRequest)]
    [InlineData("proxy.example.com", "other.example.com", HttpStatusCode.MisdirectedRequest)]
    [InlineData("*", "anything.example.net", HttpStatusCode.OK)]
    public async Task AllowedHosts_AddNames(string allowed, string host, HttpStatusCode expected)
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!), new Dictionary<string, string?> { ["LmsProxy:AllowedHosts:0"] = allowed });

        using var response = await SendAsync(proxy, HttpMethod.Get, "/status", host);

        Assert.Equal(expected, response.StatusCode);
    }

    [Fact(Timeout = 15000)]
    public async Task Healthz_AnswersWhateverTheHost()
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));

        using var response = await SendAsync(proxy, HttpMethod.Get, "/healthz", "lmsproxy.example.com");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact(Timeout = 15000)]
    public async Task StatusPage_CannotBeFramed_AndRunsOnlyItsOwnScript()
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!));
        using var client = proxy.Client();

        using var page = await client.GetAsync("/");

        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("DENY", page.Headers.GetValues("X-Frame-Options").Single());
        var csp = page.Headers.GetValues("Content-Security-Policy").Single();
        Assert.Contains("frame-ancestors 'none'", csp);
        Assert.Contains("default-src 'none'", csp);
        Assert.Matches("script-src 'sha256-[A-Za-z0-9+/=]+'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
    }
}
