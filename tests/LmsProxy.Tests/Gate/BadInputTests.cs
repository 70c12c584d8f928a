using System.Net;
using LmsProxy.Tests.Infrastructure;

namespace LmsProxy.Tests.Gate;

/// <summary>Bad request bodies get a clear 4xx from the proxy and never reach LM Studio or lms.</summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private GateEnvironment _env = null!;

    public async Task InitializeAsync() => _env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:MaxRequestBodyBytes"] = "65536" });

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Theory(Timeout = 15000)]
    [InlineData("{\"model\":\"qwen/qwen3-8b\",\"messages\":[", "invalid_json")]
    [InlineData("{\"model\":\"qwen/qwen3-8b\"} trailing", "invalid_json")]
    [InlineData("not json at all", "invalid_json")]
    [InlineData("", "invalid_json")]
    [InlineData("[1,2]", "invalid_json")]
    [InlineData("{\"model\":42}", "invalid_model")]
    [InlineData("{\"model\":{\"name\":\"qwen\"}}", "invalid_model")]
    [InlineData("{\"model\":\"a\",\"model\":\"b\"}", "invalid_model")]
    [InlineData("{\"messages\":[]}", "missing_model")]
    public async Task MalformedBody_Gets400WithACode(string body, string code)
    {
        using var response = await _env.Client.PostAsync("/v1/chat/completions", Json.Body(body));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(code, await response.ErrorCode());
        Assert.Equal(0, _env.Simulator.State.InferenceRequests);
        Assert.All(_env.Lms.Calls, c => Assert.Equal("ls --json", c));
    }

    [Fact(Timeout = 15000)]
    public async Task BodyOverTheLimit_Gets413()
    {
        var big = "{\"model\":\"qwen/qwen3-8b\",\"prompt\":\"" + new string('x', 100_000) + "\"}";

        using var response = await _env.Client.PostAsync("/v1/completions", Json.Body(big));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("request_too_large", await response.ErrorCode());
        Assert.Equal(0, _env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 15000)]
    public async Task ChunkedBodyOverTheLimit_Gets413()
    {
        var big = "{\"model\":\"qwen/qwen3-8b\",\"prompt\":\"" + new string('x', 100_000) + "\"}";
        using var content = new StreamContent(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(big)));
        content.Headers.ContentType = new("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;

        using var response = await _env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact(Timeout = 15000)]
    public async Task ManyLargeHeaders_GetA4xx_NotA5xx()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("qwen/qwen3-8b") };
        for (var i = 0; i < 200; i++) request.Headers.TryAddWithoutValidation($"X-Junk-{i}", new string('j', 1000));

        using var response = await _env.Client.SendAsync(request);

        Assert.InRange((int)response.StatusCode, 400, 499);
        using var after = await _env.Client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }
}
