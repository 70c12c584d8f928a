// The Responses client is marked experimental in OpenAI 2.15.0.
#pragma warning disable OPENAI001
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using OpenAI.Responses;

namespace LmsProxy.Tests.EndToEnd;

/// <summary>
/// The official OpenAI .NET client, unchanged but for its base URL, against the proxy in front of the simulated
/// LM Studio (JIT off: a cold model would be refused). Every call targets a cold model and none sees an error.
/// </summary>
public sealed class OpenAiClientTests : IAsyncLifetime
{
    private static readonly ApiKeyCredential Credential = new("lm-studio");
    private GateEnvironment _env = null!;

    private OpenAIClientOptions ClientOptions => new() { Endpoint = new Uri(_env.Proxy.Url, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(30) };

    public async Task InitializeAsync() => _env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(300) });

    public async Task DisposeAsync()
    {
        // No client ever saw LM Studio's refusal: the proxy loaded first every time.
        Assert.Equal(0, _env.Simulator.State.NotLoadedAnswers);
        await _env.DisposeAsync();
    }

    [Fact(Timeout = 30000)]
    public async Task Chat_NonStreaming()
    {
        var client = new ChatClient("qwen/qwen3-8b", Credential, ClientOptions);

        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Hello")]);

        Assert.Equal("Hello from qwen/qwen3-8b.", completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(1, _env.Simulator.State.LoadCount("qwen/qwen3-8b"));
    }

    [Fact(Timeout = 30000)]
    public async Task Chat_Streaming()
    {
        var client = new ChatClient("google/gemma-3-1b", Credential, ClientOptions);
        var text = new System.Text.StringBuilder();
        var updates = 0;

        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Hello")]))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
        }

        Assert.Equal("Hello token1 token2 token3 token4", text.ToString());
        Assert.True(updates >= 5);
    }

    [Fact(Timeout = 30000)]
    public async Task Chat_ToolCallsPassThrough()
    {
        var client = new ChatClient("qwen/qwen3-8b", Credential, ClientOptions);
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", "Weather for a city", BinaryData.FromString("""{"type":"object","properties":{"location":{"type":"string"}}}""")) },
        };

        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Weather in Paris?")], options);

        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("Paris", JsonDocument.Parse(call.FunctionArguments.ToString()).RootElement.GetProperty("location").GetString());
    }

    [Fact(Timeout = 30000)]
    public async Task Embeddings()
    {
        var client = new EmbeddingClient("text-embedding-nomic-embed-text-v1.5", Credential, ClientOptions);

        OpenAIEmbedding embedding = await client.GenerateEmbeddingAsync("Hello");

        Assert.Equal(8, embedding.ToFloats().Length);
    }

    [Fact(Timeout = 30000)]
    public async Task LegacyCompletions_ThroughTheClientsOwnPipeline()
    {
        // 2.15.0 keeps its legacy completions client internal; its public pipeline sends the same request.
        var pipeline = new OpenAIClient(Credential, ClientOptions).Pipeline;
        using var message = pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(_env.Proxy.Url, "/v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString("""{"model":"qwen/qwen3-8b","prompt":"Once"}"""));

        await pipeline.SendAsync(message);

        using var body = JsonDocument.Parse(message.Response!.Content);
        Assert.Equal(200, message.Response.Status);
        Assert.Equal(" and so qwen/qwen3-8b went on.", body.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact(Timeout = 30000)]
    public async Task Responses_SecondTurnWithPreviousResponseId_AfterTheModelWasEvicted()
    {
        var client = new ResponsesClient(Credential, new ResponsesClientOptions { Endpoint = new Uri(_env.Proxy.Url, "/v1") });

        ResponseResult first = await client.CreateResponseAsync("qwen/qwen3-8b", "Hello", null);
        _env.Simulator.State.Evict("qwen/qwen3-8b");
        await WaitUntilProxyKnowsItIsGone();
        ResponseResult second = await client.CreateResponseAsync("qwen/qwen3-8b", "And then?", first.Id);

        Assert.Equal("Hello from qwen/qwen3-8b.", first.GetOutputText());
        Assert.Equal($"Continuing {first.Id} with qwen/qwen3-8b.", second.GetOutputText());
        Assert.Equal(2, _env.Simulator.State.LoadCount("qwen/qwen3-8b"));
    }

    // The background refresh sees the eviction within RefreshInterval; the proxy then loads before forwarding.
    private async Task WaitUntilProxyKnowsItIsGone()
    {
        var scheduler = _env.Proxy.Scheduler;
        await Eventually.Until(async () =>
        {
            await scheduler.RefreshAllAsync(CancellationToken.None);
            return scheduler.Snapshot().Hosts.All(h => h.Instances.All(i => i.Model != "qwen/qwen3-8b"));
        });
    }
}
