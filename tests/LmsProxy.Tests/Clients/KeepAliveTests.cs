using System.ClientModel;
using System.Net;
using System.Text;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using OpenAI;
using OpenAI.Chat;

namespace LmsProxy.Tests.Clients;

/// <summary>Opt-in keep-alives while a streaming request waits for its model: clients see them, parse past them, and get errors in the stream.</summary>
public sealed class KeepAliveTests
{
    private static Dictionary<string, string?> KeepAlive(string mode) => new()
    {
        ["LmsProxy:StreamKeepAlive"] = mode,
        ["LmsProxy:KeepAliveAfter"] = "00:00:00.400",
        ["LmsProxy:KeepAliveInterval"] = "00:00:01",
        ["LmsProxy:Loader"] = "rest",
    };

    [Fact(Timeout = 30000)]
    public async Task RawReader_SeesCommentKeepAlivesFirst_ThenTheRealStream()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(4) }, KeepAlive("comment"));
        var started = DateTime.UtcNow;

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("qwen/qwen3-8b", stream: true) };
        using var response = await env.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var headersAfter = DateTime.UtcNow - started;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<(TimeSpan At, string Line)>();
        while (await reader.ReadLineAsync() is { } line) lines.Add((DateTime.UtcNow - started, line));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.True(headersAfter < TimeSpan.FromSeconds(2), $"the 200 came after {headersAfter.TotalMilliseconds} ms, not once keep-alives began");
        var keepAlives = lines.Where(l => l.Line.StartsWith(": loading qwen/qwen3-8b ", StringComparison.Ordinal)).ToList();
        Assert.True(keepAlives.Count >= 2, $"{keepAlives.Count} keep-alives in {string.Join(" | ", lines.Select(l => l.Line))}");
        Assert.True(keepAlives[1].At - keepAlives[0].At > TimeSpan.FromSeconds(0.8), "keep-alives arrive one by one, KeepAliveInterval apart");
        var firstData = lines.FindIndex(l => l.Line.StartsWith("data: ", StringComparison.Ordinal));
        Assert.True(firstData > lines.IndexOf(keepAlives[^1]), "keep-alives come before the answer");
        Assert.Equal("data: [DONE]", lines.Last(l => l.Line.Length > 0).Line);
    }

    [Theory(Timeout = 30000)]
    [InlineData("chunk")]
    [InlineData("comment")]
    public async Task OpenAiClient_StreamsNormally_WithKeepAlivesInFront(string mode)
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) }, KeepAlive(mode));
        var chat = new ChatClient("qwen/qwen3-8b", new ApiKeyCredential("lm-studio"), new OpenAIClientOptions { Endpoint = new Uri(env.Proxy.Url, "/v1") });

        var text = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
        }

        Assert.Equal("Hello token1 token2 token3 token4", text.ToString());
        Assert.Equal(1, env.Simulator.State.LoadCount("qwen/qwen3-8b"));
    }

    [Fact(Timeout = 30000)]
    public async Task FailureAfterThe200_ArrivesAsAnInStreamError()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3) },
            new Dictionary<string, string?>(KeepAlive("comment")) { ["LmsProxy:HoldTimeout"] = "00:00:01.500" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: true));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith(": loading qwen/qwen3-8b", body, StringComparison.Ordinal);
        Assert.Contains("data: {\"error\":{\"message\":\"'qwen/qwen3-8b' was not ready within", body, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"model_loading\"", body, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30000)]
    public async Task ShortHold_GetsNoKeepAlive_AndTheUsualHeaders()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100) },
            new Dictionary<string, string?>(KeepAlive("comment")) { ["LmsProxy:KeepAliveAfter"] = "00:00:05" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: true));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("data: ", body, StringComparison.Ordinal);
        Assert.True(response.Headers.Contains("X-LmsProxy-Hold-Ms"));
        Assert.False(response.Headers.Contains("X-LmsProxy-Keep-Alive"));
    }
}
