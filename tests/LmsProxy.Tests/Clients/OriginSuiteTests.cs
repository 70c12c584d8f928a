// The Responses client is marked experimental in OpenAI 2.15.0.
#pragma warning disable OPENAI001
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using OpenAI;
using OpenAI.Audio;
using OpenAI.Chat;
using OpenAI.Embeddings;
using OpenAI.Models;
using OpenAI.Responses;

namespace LmsProxy.Tests.Clients;

/// <summary>
/// The integration suite this project grew from checks eight things against LM Studio: 1 health, 2 list models, 3 one
/// model's info (by an id with a slash), 4 multi-round chat, 5 text completion, 6 multi-round stateful responses,
/// 7 embeddings, 8 a tool-using agent loop. Here all eight run in that order, in one test over one environment, through
/// the proxy with the official OpenAI .NET client. Every model starts unloaded (JIT off), and every model is evicted
/// between steps, as LM Studio's idle TTL would: the proxy learns of it only when LM Studio refuses, reloads, and
/// re-sends. Each step must pass.
/// </summary>
public sealed class OriginSuiteTests : IAsyncLifetime
{
    private const string Qwen = "qwen/qwen3-8b";
    private const string Embedder = "text-embedding-nomic-embed-text-v1.5";
    private static readonly ApiKeyCredential Credential = new("lm-studio");

    private GateEnvironment _env = null!;

    private SimulatorState Sim => _env.Simulator.State;

    // No client-side retries: a step passes on its first attempt or the failure shows.
    private OpenAIClientOptions ClientOptions => new()
    {
        Endpoint = new Uri(_env.Proxy.Url, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(30), RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
    };

    public async Task InitializeAsync() => _env = await GateEnvironment.StartAsync(
        new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200) }, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact(Timeout = 60000)]
    public async Task AllEightSteps_InOrder_FromUnloadedModels_WithEvictionsBetweenSteps()
    {
        Assert.Empty(Sim.Instances());

        await Step(1, "health", Health, loads: []);
        await Step(2, "list models", ListModels, loads: []);
        await Step(3, "model info by an id with a slash", ModelInfo, loads: []);
        await Step(4, "multi-round chat", MultiRoundChat, loads: [Qwen]);
        await Step(5, "text completion", TextCompletion, loads: [Qwen]);
        await Step(6, "multi-round stateful responses", MultiRoundResponses, loads: [Qwen]);
        await Step(7, "embeddings", Embeddings, loads: [Embedder]);
        await Step(8, "tool-using agent loop", AgentLoop, loads: [Qwen]);

        // Steps 5, 6 and 8 found qwen evicted behind the proxy's back: LM Studio refused, the proxy reloaded and re-sent.
        Assert.Equal(4, Sim.LoadCount(Qwen));
        Assert.Equal(1, Sim.LoadCount(Embedder));
    }

    /// <summary>
    /// Runs one step from a state where nothing is loaded, names it if it fails, checks that it loaded exactly the
    /// models it uses (once each), then evicts everything for the next step.
    /// </summary>
    private async Task Step(int number, string name, Func<Task> body, string[] loads)
    {
        Assert.Empty(Sim.Instances());
        var before = Sim.Options.Models.ToDictionary(m => m.Key, m => Sim.LoadCount(m.Key));
        try
        {
            await body();
            foreach (var (key, count) in before)
            {
                Assert.True(Sim.LoadCount(key) == count + (loads.Contains(key) ? 1 : 0),
                    $"{key} was loaded {Sim.LoadCount(key) - count} time(s) during this step");
            }
        }
        catch (Exception failure)
        {
            throw new InvalidOperationException($"Step {number} ({name}) failed: {failure.Message}", failure);
        }
        foreach (var instance in Sim.Instances()) Sim.Evict(instance.Id);
    }

    // ---- 1: health --------------------------------------------------------------------------------------------------

    private async Task Health()
    {
        using var healthz = await _env.Client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, healthz.StatusCode);
        using var readyz = await _env.Client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, readyz.StatusCode);
    }

    // ---- 2: list models ---------------------------------------------------------------------------------------------

    private async Task ListModels()
    {
        var client = new OpenAIModelClient(Credential, ClientOptions);

        OpenAIModelCollection models = await client.GetModelsAsync();

        // LM Studio (JIT off) lists only loaded models, and none is loaded: the proxy lists every downloaded one.
        var ids = models.Select(m => m.Id).ToList();
        foreach (var model in Sim.Options.Models) Assert.Contains(model.Key, ids);
    }

    // ---- 3: one model's info ----------------------------------------------------------------------------------------

    private async Task ModelInfo()
    {
        var client = new OpenAIModelClient(Credential, ClientOptions);

        OpenAIModel model = await client.GetModelAsync(Qwen);

        Assert.Equal(Qwen, model.Id);
        Assert.Equal("qwen", model.OwnedBy);
    }

    // ---- 4: multi-round chat ----------------------------------------------------------------------------------------

    private async Task MultiRoundChat()
    {
        var client = new ChatClient(Qwen, Credential, ClientOptions);
        var history = new List<ChatMessage> { new SystemChatMessage("You are terse.") };

        foreach (var question in new[] { "Hello, I am Ada.", "What did I just say?", "And my name?" })
        {
            history.Add(new UserChatMessage(question));
            ChatCompletion answer = await client.CompleteChatAsync(history);
            Assert.Equal(ChatFinishReason.Stop, answer.FinishReason);
            Assert.Equal("Hello from qwen/qwen3-8b.", answer.Content[0].Text);
            history.Add(new AssistantChatMessage(answer));
        }
        Assert.Equal(7, history.Count);
    }

    // ---- 5: text completion -----------------------------------------------------------------------------------------

    private async Task TextCompletion()
    {
        // OpenAI 2.15.0 keeps its legacy completions client internal; its public pipeline sends the same request.
        var pipeline = new OpenAIClient(Credential, ClientOptions).Pipeline;
        using var message = pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(_env.Proxy.Url, "/v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString("""{"model":"qwen/qwen3-8b","prompt":"Once upon a time","max_tokens":16}"""));

        await pipeline.SendAsync(message);

        Assert.Equal(200, message.Response!.Status);
        using var body = JsonDocument.Parse(message.Response.Content);
        Assert.Equal("text_completion", body.RootElement.GetProperty("object").GetString());
        Assert.Equal(" and so qwen/qwen3-8b went on.", body.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    // ---- 6: multi-round stateful responses --------------------------------------------------------------------------

    private async Task MultiRoundResponses()
    {
        var client = new ResponsesClient(Credential, new ResponsesClientOptions
        {
            Endpoint = new Uri(_env.Proxy.Url, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(30), RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
        });

        ResponseResult first = await client.CreateResponseAsync(Qwen, "Remember the number 7.", null);
        ResponseResult second = await client.CreateResponseAsync(Qwen, "Add 1 to it.", first.Id);
        ResponseResult third = await client.CreateResponseAsync(Qwen, "What is it now?", second.Id);

        Assert.Equal("Hello from qwen/qwen3-8b.", first.GetOutputText());
        Assert.Equal($"Continuing {first.Id} with qwen/qwen3-8b.", second.GetOutputText());
        Assert.Equal($"Continuing {second.Id} with qwen/qwen3-8b.", third.GetOutputText());
        Assert.Equal(3, new[] { first.Id, second.Id, third.Id }.Distinct().Count());
    }

    // ---- 7: embeddings ----------------------------------------------------------------------------------------------

    private async Task Embeddings()
    {
        var client = new EmbeddingClient(Embedder, Credential, ClientOptions);

        OpenAIEmbeddingCollection embeddings = await client.GenerateEmbeddingsAsync(["The cat sat.", "A much longer sentence about dogs."]);

        Assert.Equal(2, embeddings.Count);
        Assert.All(embeddings, e => Assert.Equal(8, e.ToFloats().Length));
        Assert.NotEqual(embeddings[0].ToFloats().ToArray(), embeddings[1].ToFloats().ToArray());
    }

    // ---- 8: tool-using agent loop -----------------------------------------------------------------------------------

    private async Task AgentLoop()
    {
        var client = new ChatClient(Qwen, Credential, ClientOptions);
        var weather = ChatTool.CreateFunctionTool("get_weather", "The weather in a city",
            BinaryData.FromString("""{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}"""));
        var withTools = new ChatCompletionOptions { Tools = { weather } };
        var messages = new List<ChatMessage> { new UserChatMessage("What is the weather in Paris?") };
        var calls = new List<ChatToolCall>();
        var options = withTools;
        string? answer = null;

        for (var round = 0; round < 4 && answer is null; round++)
        {
            ChatCompletion completion = await client.CompleteChatAsync(messages, options);
            if (completion.FinishReason == ChatFinishReason.ToolCalls)
            {
                messages.Add(new AssistantChatMessage(completion));
                foreach (var call in completion.ToolCalls)
                {
                    calls.Add(call);
                    var location = JsonDocument.Parse(call.FunctionArguments.ToString()).RootElement.GetProperty("location").GetString();
                    messages.Add(new ToolChatMessage(call.Id, $"{{\"location\":\"{location}\",\"forecast\":\"18 °C and sunny\"}}"));
                }
                // The simulated model calls the first offered tool whenever tools are offered (it reads no tool results);
                // a real model would answer now. So the round after the results offers none.
                options = new ChatCompletionOptions();
                continue;
            }
            Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
            answer = completion.Content[0].Text;
        }

        var only = Assert.Single(calls);
        Assert.Equal("get_weather", only.FunctionName);
        Assert.Equal("Paris", JsonDocument.Parse(only.FunctionArguments.ToString()).RootElement.GetProperty("location").GetString());
        Assert.Equal("Hello from qwen/qwen3-8b.", answer);
        Assert.Equal(3, messages.Count); // user, assistant's tool call, tool result; the answer ended the loop
    }

    // ---- an endpoint LM Studio does not have ------------------------------------------------------------------------

    [Fact(Timeout = 60000)]
    public async Task UnknownToLmStudio_AudioSpeech_Is404UnsupportedEndpoint_NotLmStudios200()
    {
        using var response = await _env.Client.PostAsync("/v1/audio/speech", Json.Body("""{"model":"tts-1","input":"Hello","voice":"alloy"}"""));
        var text = await response.Content.ReadAsStringAsync();

        // LM Studio answers 200 {"error":"Unexpected endpoint or method. (POST /v1/audio/speech)"}; the proxy must not pass that as success.
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("unsupported_endpoint", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(1, Sim.RequestsTo("/v1/audio/speech")); // it was LM Studio's answer, unmasked, not a guess

        // The OpenAI client, which would otherwise have taken LM Studio's JSON for audio bytes, raises instead.
        var audio = new AudioClient("tts-1", Credential, ClientOptions);
        var error = await Assert.ThrowsAsync<ClientResultException>(() => audio.GenerateSpeechAsync("Hello", GeneratedSpeechVoice.Alloy));
        Assert.Equal(404, error.Status);
        Assert.Equal(0, Sim.TotalLoads);
    }
}
