using System.Diagnostics;
using System.Net;
using LmsProxy.Tests.Infrastructure;

namespace LmsProxy.Tests.Gateway;

/// <summary>LM Studio not running: every route answers fast with a clear JSON error; the proxy itself stays healthy.</summary>
public sealed class UpstreamDownTests : IAsyncLifetime
{
    // Stated bound: on loopback a refused connection must turn into an answer well under a second.
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);
    private ProxyApp _proxy = null!;
    private HttpClient _client = null!;

    public Task InitializeAsync()
    {
        _proxy = new ProxyApp(new Uri($"http://127.0.0.1:{Eventually.UnusedPort()}"));
        _client = _proxy.Client();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _proxy.DisposeAsync();
    }

    [Theory(Timeout = 15000)]
    [InlineData("POST", "/v1/chat/completions")]
    [InlineData("GET", "/v1/models")]
    [InlineData("GET", "/api/v0/models")]
    public async Task Request_WhenLmStudioIsDown_Gets502JsonFast(string method, string path)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method == "POST") request.Content = Json.Chat("qwen/qwen3-8b");
        var watch = Stopwatch.StartNew();

        using var response = await _client.SendAsync(request);

        watch.Stop();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("upstream_unavailable", await response.ErrorCode());
        Assert.Contains("not reachable", await response.ErrorMessage());
        Assert.True(watch.Elapsed < Bound, $"took {watch.ElapsedMilliseconds} ms");
    }

    [Fact(Timeout = 15000)]
    public async Task Healthz_IsOk_ButReadyz_Says503WithReason()
    {
        using var health = await _client.GetAsync("/healthz");
        using var ready = await _client.GetAsync("/readyz");

        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("not reachable", (await ready.ReadJson()).GetProperty("reason").GetString());
    }
}
