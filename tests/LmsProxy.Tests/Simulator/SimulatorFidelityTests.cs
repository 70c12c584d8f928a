// The Responses client is marked experimental in OpenAI 2.15.0.
#pragma warning disable OPENAI001
using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using OpenAI.Responses;

namespace LmsProxy.Tests.Simulator;

/// <summary>
/// The simulated LM Studio on its own, no proxy: it must be as costly and as hostile as the real one where that
/// changes outcomes (memory guardrail, unloads that cut requests off, parallel slots, a slow lms), and speak the
/// shapes real clients parse (Responses and Anthropic streams, /api/v1/chat, WebSocket namespaces).
/// </summary>
public sealed class SimulatorFidelityTests : IAsyncLifetime
{
    private const string Qwen = "qwen/qwen3-8b";
    private const long Gigabyte = 1_000_000_000;

    // 5.03 GB × 1.15 = 5.7845, the simulator's estimate for qwen3-8b, in LM Studio's current guardrail wording.
    private const string QwenRefusal =
        "Model loading was stopped due to insufficient system resources. Under the current settings, this model requires approximately 5.78 GB of memory, " +
        "and continuing to load it would likely overload your system and cause it to freeze. If you think this is incorrect, you can adjust the model loading guardrails in settings.";

    private readonly List<IAsyncDisposable> _simulators = [];
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(20) };

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        _http.Dispose();
        foreach (var simulator in _simulators) await simulator.DisposeAsync();
    }

    private async Task<SimulatorApp> StartAsync(SimulatorOptions? options = null, params string[] loaded)
    {
        var sim = await SimulatorApp.StartAsync(options ?? new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20) });
        _simulators.Add(sim);
        foreach (var key in loaded) await sim.State.LoadAsync(sim.State.Find(key)!, null, null);
        return sim;
    }

    private async Task<(HttpStatusCode Status, JsonNode Body)> PostAsync(SimulatorApp sim, string path, object body)
    {
        using var response = await _http.PostAsJsonAsync(new Uri(sim.Url, path), body);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    // ---- Memory guardrail ----------------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task RestLoad_OverTheMemoryBudget_IsRefusedWithLmStudiosText()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), MemoryBudgetBytes = 6 * Gigabyte });

        var small = await PostAsync(sim, "/api/v1/models/load", new { model = "google/gemma-3-1b" });
        var fits = await PostAsync(sim, "/api/v1/models/load", new { model = Qwen });
        var refused = await PostAsync(sim, "/api/v1/models/load", new { model = "qwen/qwen3-8b-instruct" });

        // 0.72 + 5.03 GB fit in 6 GB; 0.72 + 5.03 + 5.03 would not.
        Assert.Equal(HttpStatusCode.OK, small.Status);
        Assert.Equal(HttpStatusCode.OK, fits.Status);
        Assert.Equal(HttpStatusCode.InternalServerError, refused.Status);
        Assert.Equal("model_load_failed", (string?)refused.Body["error"]!["type"]);
        Assert.Equal(QwenRefusal, (string?)refused.Body["error"]!["message"]);
        Assert.Equal(1, sim.State.RefusedLoads);
        Assert.Equal(["google/gemma-3-1b", Qwen], sim.State.Instances().Select(i => i.Id));
        Assert.Equal(5_750_000_000, sim.State.PeakLoadedBytes);
    }

    [Fact(Timeout = 30000)]
    public async Task ConcurrentLoads_CountTheOneStillLoading_AgainstTheBudget()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(500), MemoryBudgetBytes = 6 * Gigabyte });

        var loads = await Task.WhenAll(
            PostAsync(sim, "/api/v1/models/load", new { model = Qwen }),
            PostAsync(sim, "/api/v1/models/load", new { model = "qwen/qwen3-8b-instruct" }));

        Assert.Single(loads, l => l.Status == HttpStatusCode.OK);
        Assert.Single(loads, l => l.Status == HttpStatusCode.InternalServerError);
        Assert.Equal(1, sim.State.RefusedLoads);
        Assert.Single(sim.State.Instances());
    }

    [Fact(Timeout = 30000)]
    public async Task RefusalStatus_IsConfigurable()
    {
        var sim = await StartAsync(new SimulatorOptions { MemoryBudgetBytes = Gigabyte, LoadRefusalStatus = 400 });

        var refused = await PostAsync(sim, "/api/v1/models/load", new { model = Qwen });

        Assert.Equal(HttpStatusCode.BadRequest, refused.Status);
        Assert.Equal(QwenRefusal, (string?)refused.Body["error"]!["message"]);
    }

    [Fact(Timeout = 30000)]
    public async Task LmsLoad_OverTheMemoryBudget_PrintsTheErrorOnStderrAndExits1()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), MemoryBudgetBytes = Gigabyte });
        using var lms = new FakeLms(sim.Url, "START_MS=0");

        var result = await RunAsync(lms, "load", Qwen, "-y");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal("Error: " + QwenRefusal, result.Stderr.Trim());
        // The spinner runs for every real load, failed ones too, on stdout (addendum F1): frames, never JSON.
        Assert.StartsWith("\u001b[?25l\rLoading qwen/qwen3-8b", result.Stdout);
        Assert.EndsWith("\r\u001b[K\u001b[?25h", result.Stdout);
        Assert.Equal(1, sim.State.RefusedLoads);
        Assert.Empty(sim.State.Instances());
    }

    [Fact(Timeout = 30000)]
    public async Task JitLoad_OverTheMemoryBudget_Answers400FailedToLoad()
    {
        var sim = await StartAsync(new SimulatorOptions { Jit = true, LoadTime = TimeSpan.FromMilliseconds(20), MemoryBudgetBytes = Gigabyte });

        var (status, body) = await PostAsync(sim, "/v1/chat/completions", new { model = Qwen, messages = new[] { new { role = "user", content = "hi" } } });

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("Failed to load model \"qwen/qwen3-8b\". Error: Model loading was stopped due to insufficient system resources.", (string?)body["error"]!["message"]);
        Assert.Equal("invalid_request_error", (string?)body["error"]!["type"]);
        Assert.Equal(1, sim.State.RefusedLoads);
        Assert.Empty(sim.State.Instances());
    }

    // ---- Catalog, parallel slots, busy state ---------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task Catalogs_ReportSizesContextAndParallel()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), Parallel = 2 });
        await PostAsync(sim, "/api/v1/models/load", new { model = Qwen, context_length = 8192 });
        using var lms = new FakeLms(sim.Url, "START_MS=0");

        var models = JsonNode.Parse(await _http.GetStringAsync(new Uri(sim.Url, "/api/v1/models")))!["models"]!.AsArray();
        var ps = JsonNode.Parse((await RunAsync(lms, "ps", "--json")).Stdout)!.AsArray();
        var ls = JsonNode.Parse((await RunAsync(lms, "ls", "--json")).Stdout)!.AsArray();

        var qwen = models.Single(m => (string?)m!["key"] == Qwen)!;
        Assert.Equal(5_030_000_000, (long)qwen["size_bytes"]!);
        Assert.Equal(8192, (int)qwen["loaded_instances"]![0]!["config"]!["context_length"]!);
        Assert.Equal(2, (int)qwen["loaded_instances"]![0]!["config"]!["parallel"]!);
        Assert.Equal(84_000_000, (long)models.Single(m => (string?)m!["type"] == "embedding")!["size_bytes"]!);
        Assert.Equal(5_030_000_000, (long)ps[0]!["sizeBytes"]!);
        Assert.Equal(2, (int)ps[0]!["parallel"]!);
        Assert.Equal("idle", (string?)ps[0]!["status"]);
        Assert.Equal(720_000_000, (long)ls.Single(m => (string?)m!["modelKey"] == "google/gemma-3-1b")!["sizeBytes"]!);
    }

    [Fact(Timeout = 30000)]
    public async Task Parallel_LimitsRequestsAnsweredAtOnce_TheRestQueueInside()
    {
        var delay = TimeSpan.FromMilliseconds(1500);
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), Parallel = 2, ResponseDelay = delay }, Qwen);
        using var lms = new FakeLms(sim.Url, "START_MS=0");
        Task<(HttpStatusCode Status, JsonNode Body)> Chat() => PostAsync(sim, "/v1/chat/completions", new { model = Qwen, messages = new[] { new { role = "user", content = "hi" } } });
        var started = Stopwatch.GetTimestamp();

        var firstPair = new[] { Chat(), Chat() };
        await Eventually.Until(() => sim.State.InFlight(Qwen) == 2);
        var secondPair = new[] { Chat(), Chat() };
        await Eventually.Until(() => sim.State.Instances()[0].Queued == 4);
        var inFlightWhileFull = sim.State.InFlight(Qwen);
        var busy = JsonNode.Parse((await RunAsync(lms, "ps", "--json")).Stdout)![0]!;
        var answers = await Task.WhenAll(firstPair.Concat(secondPair));

        Assert.Equal(2, inFlightWhileFull);
        Assert.Equal("generating", (string?)busy["status"]);
        Assert.Equal(4, (int)busy["queued"]!);
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.Status));
        // The second pair waited for the first pair's slots: two rounds of the response delay.
        Assert.True(Stopwatch.GetElapsedTime(started) >= 2 * delay - TimeSpan.FromMilliseconds(20), $"took {Stopwatch.GetElapsedTime(started)}");
        Assert.Equal(0, sim.State.InFlight(Qwen));
    }

    // ---- Unload cuts requests off --------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task RestUnload_CutsOffAStreamMidway()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), TokenDelay = TimeSpan.FromMilliseconds(100), StreamEvents = 30 }, Qwen);
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(sim.Url, "/v1/chat/completions"))
        {
            Content = JsonContent.Create(new { model = Qwen, stream = true, messages = new[] { new { role = "user", content = "hi" } } }),
        };
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var firstLine = await reader.ReadLineAsync();

        var inFlightBefore = sim.State.InFlight(Qwen);
        var unload = await PostAsync(sim, "/api/v1/models/unload", new { instance_id = Qwen });

        Assert.StartsWith("data: {", firstLine);
        Assert.Equal(1, inFlightBefore);
        Assert.Equal(HttpStatusCode.OK, unload.Status);
        Assert.Equal(Qwen, (string?)unload.Body["instance_id"]);
        await Assert.ThrowsAnyAsync<IOException>(() => reader.ReadToEndAsync());
        Assert.Equal(1, sim.State.CutOffRequests);
        Assert.Equal(1, sim.State.UnloadRequests);
        await Eventually.Until(() => sim.State.InFlight(Qwen) == 0);
    }

    [Fact(Timeout = 30000)]
    public async Task LmsUnload_CutsOffABusyRequest_AndAnUnknownIdIsNotFoundWithExit0()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), ResponseDelay = TimeSpan.FromSeconds(10) }, Qwen);
        using var lms = new FakeLms(sim.Url, "START_MS=0");
        var busy = PostAsync(sim, "/v1/chat/completions", new { model = Qwen, messages = new[] { new { role = "user", content = "hi" } } });
        await Eventually.Until(() => sim.State.InFlight(Qwen) == 1);

        var unload = await RunAsync(lms, "unload", Qwen);
        var unknown = await RunAsync(lms, "unload", "no-such-model");

        Assert.Equal(0, unload.ExitCode);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => busy);
        Assert.Equal(0, unknown.ExitCode);
        Assert.Contains("Model Not Found", unknown.Stderr);
        Assert.Equal(1, sim.State.CutOffRequests);
        Assert.Equal(2, sim.State.UnloadRequests);
        Assert.Empty(sim.State.Instances());
    }

    [Fact(Timeout = 30000)]
    public async Task EvictIfIdle_LeavesABusyInstanceAlone_AndEvictDoesNot()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), ResponseDelay = TimeSpan.FromSeconds(10) }, Qwen);
        var busy = PostAsync(sim, "/v1/chat/completions", new { model = Qwen, messages = new[] { new { role = "user", content = "hi" } } });
        await Eventually.Until(() => sim.State.InFlight(Qwen) == 1);

        var evictedWhileBusy = sim.State.EvictIfIdle(Qwen);
        var evicted = sim.State.Evict(Qwen);

        Assert.Equal(0, evictedWhileBusy);
        Assert.Equal(1, evicted);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => busy);
        Assert.Equal(1, sim.State.CutOffRequests);
        Assert.Equal(0, sim.State.UnloadRequests); // evictions are the simulator's own, not asked for through REST or lms
    }

    [Fact(Timeout = 30000)]
    public async Task RestUnload_OfAnUnknownId_Is404ModelNotFound()
    {
        var sim = await StartAsync();

        var (status, body) = await PostAsync(sim, "/api/v1/models/unload", new { instance_id = "nothing-loaded" });

        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("model_not_found", (string?)body["error"]!["type"]);
        Assert.Equal(1, sim.State.UnloadRequests);
        Assert.Equal(0, sim.State.CutOffRequests);
    }

    // ---- Stored responses are per host ---------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task StoredResponses_BelongToTheHostThatMadeThem()
    {
        var hostA = await StartAsync(null, Qwen);
        var hostB = await StartAsync(null, Qwen);

        var first = await PostAsync(hostA, "/v1/responses", new { model = Qwen, input = "Hello" });
        var id = (string)first.Body["id"]!;
        var onB = await PostAsync(hostB, "/v1/responses", new { model = Qwen, input = "And then?", previous_response_id = id });
        var onA = await PostAsync(hostA, "/v1/responses", new { model = Qwen, input = "And then?", previous_response_id = id });
        var chat = await PostAsync(hostA, "/api/v1/chat", new { model = Qwen, input = "Hello" });
        var chatOnB = await PostAsync(hostB, "/api/v1/chat", new { model = Qwen, input = "And?", previous_response_id = (string)chat.Body["response_id"]! });

        Assert.StartsWith("resp_", id);
        Assert.Equal(HttpStatusCode.NotFound, onB.Status);
        Assert.Equal(HttpStatusCode.OK, onA.Status);
        Assert.Equal($"Continuing {id} with {Qwen}.", (string?)onA.Body["output"]![0]!["content"]![0]!["text"]);
        Assert.Equal(HttpStatusCode.NotFound, chatOnB.Status);
    }

    // ---- /v1/responses streaming ---------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task ResponsesStream_HasOpenAiEventsInOrder_WithSequenceNumbers()
    {
        var sim = await StartAsync(null, Qwen);

        var events = await StreamEventsAsync(sim, "/v1/responses", new { model = Qwen, input = "Hello", stream = true });

        var names = events.Select(e => e.Name).Distinct().ToList();
        Assert.Equal(
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"],
            names);
        Assert.True(events.Count(e => e.Name == "response.output_text.delta") > 1);
        Assert.All(events, e => Assert.Equal(e.Name, (string?)e.Data["type"]));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => (int)e.Data["sequence_number"]!));
        Assert.Equal($"Hello from {Qwen}.", string.Concat(events.Where(e => e.Name == "response.output_text.delta").Select(e => (string?)e.Data["delta"])));
        Assert.Equal((string?)events[0].Data["response"]!["id"], (string?)events[^1].Data["response"]!["id"]);
        Assert.Equal("completed", (string?)events[^1].Data["response"]!["status"]);
    }

    [Fact(Timeout = 30000)]
    public async Task ResponsesStream_ParsesWithTheOfficialOpenAiClient_AndItsIdContinues()
    {
        var sim = await StartAsync(null, Qwen);
        var client = new ResponsesClient(new ApiKeyCredential("lm-studio"), new ResponsesClientOptions { Endpoint = new Uri(sim.Url, "/v1") });

        var updates = new List<StreamingResponseUpdate>();
        await foreach (var update in await client.CreateResponseStreamingAsync(Qwen, "Hello", null)) updates.Add(update);
        var completed = Assert.Single(updates.OfType<StreamingResponseCompletedUpdate>());
        ResponseResult second = await client.CreateResponseAsync(Qwen, "And then?", completed.Response.Id);

        Assert.IsType<StreamingResponseCreatedUpdate>(updates[0]);
        Assert.DoesNotContain(updates, u => u.GetType() == typeof(StreamingResponseUpdate));
        Assert.Equal($"Hello from {Qwen}.", string.Concat(updates.OfType<StreamingResponseOutputTextDeltaUpdate>().Select(u => u.Delta)));
        Assert.Equal($"Hello from {Qwen}.", completed.Response.GetOutputText());
        Assert.Equal($"Continuing {completed.Response.Id} with {Qwen}.", second.GetOutputText());
    }

    // ---- Anthropic /v1/messages ----------------------------------------------------------------------------------

    private static readonly object[] WeatherTool =
    [
        new { name = "get_weather", description = "Weather in a place", input_schema = new { type = "object", properties = new { location = new { type = "string" } } } },
    ];

    [Fact(Timeout = 30000)]
    public async Task Messages_NonStreaming_IsAnthropicsMessageShape()
    {
        var sim = await StartAsync(null, Qwen);

        var (status, body) = await PostAsync(sim, "/v1/messages", new { model = Qwen, max_tokens = 64, messages = new[] { new { role = "user", content = "Hello" } } });

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.StartsWith("msg_", (string?)body["id"]);
        Assert.Equal("message", (string?)body["type"]);
        Assert.Equal("assistant", (string?)body["role"]);
        Assert.Equal(Qwen, (string?)body["model"]);
        Assert.Equal("""[{"type":"text","text":"Hello from qwen/qwen3-8b."}]""", body["content"]!.ToJsonString());
        Assert.Equal("end_turn", (string?)body["stop_reason"]);
        Assert.True(body.AsObject().ContainsKey("stop_sequence") && body["stop_sequence"] is null);
        Assert.True((int)body["usage"]!["input_tokens"]! > 0 && (int)body["usage"]!["output_tokens"]! > 0);
    }

    [Fact(Timeout = 30000)]
    public async Task Messages_WithTools_CallsTheFirstTool_UntilTheLastUserMessageCarriesAToolResult()
    {
        var sim = await StartAsync(null, Qwen);

        var call = await PostAsync(sim, "/v1/messages", new { model = Qwen, max_tokens = 64, tools = WeatherTool, messages = new[] { new { role = "user", content = "Weather in Paris?" } } });
        var toolUse = call.Body["content"]![0]!;
        var answer = await PostAsync(sim, "/v1/messages", new
        {
            model = Qwen, max_tokens = 64, tools = WeatherTool,
            messages = new object[]
            {
                new { role = "user", content = "Weather in Paris?" },
                new { role = "assistant", content = new[] { toolUse } },
                new { role = "user", content = new[] { new { type = "tool_result", tool_use_id = (string?)toolUse["id"], content = "Sunny" } } },
            },
        });

        Assert.Equal("tool_use", (string?)call.Body["stop_reason"]);
        Assert.Equal("tool_use", (string?)toolUse["type"]);
        Assert.StartsWith("toolu_", (string?)toolUse["id"]);
        Assert.Equal("get_weather", (string?)toolUse["name"]);
        Assert.Equal("""{"location":"Paris"}""", toolUse["input"]!.ToJsonString());
        Assert.Equal("end_turn", (string?)answer.Body["stop_reason"]);
        Assert.Equal("text", (string?)answer.Body["content"]![0]!["type"]);
    }

    [Fact(Timeout = 30000)]
    public async Task Messages_Streaming_SendsAnthropicsEventsInOrder()
    {
        var sim = await StartAsync(null, Qwen);

        var text = await StreamEventsAsync(sim, "/v1/messages", new { model = Qwen, max_tokens = 64, stream = true, messages = new[] { new { role = "user", content = "Hello" } } });
        var tool = await StreamEventsAsync(sim, "/v1/messages", new { model = Qwen, max_tokens = 64, stream = true, tools = WeatherTool, messages = new[] { new { role = "user", content = "Weather?" } } });

        string[] order = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"];
        Assert.Equal(order, text.Select(e => e.Name).Distinct());
        Assert.Equal(order, tool.Select(e => e.Name).Distinct());
        Assert.All(text.Concat(tool), e => Assert.Equal(e.Name, (string?)e.Data["type"]));
        Assert.True(text.Count(e => e.Name == "content_block_delta") > 1);
        Assert.Equal($"Hello from {Qwen}.", string.Concat(text.Where(e => e.Name == "content_block_delta").Select(e => (string?)e.Data["delta"]!["text"])));
        Assert.Equal("end_turn", (string?)text.Single(e => e.Name == "message_delta").Data["delta"]!["stop_reason"]);
        Assert.Equal("tool_use", (string?)tool.Single(e => e.Name == "content_block_start").Data["content_block"]!["type"]);
        Assert.All(tool.Where(e => e.Name == "content_block_delta"), e => Assert.Equal("input_json_delta", (string?)e.Data["delta"]!["type"]));
        Assert.Equal("""{"location":"Paris"}""", string.Concat(tool.Where(e => e.Name == "content_block_delta").Select(e => (string?)e.Data["delta"]!["partial_json"])));
        Assert.Equal("tool_use", (string?)tool.Single(e => e.Name == "message_delta").Data["delta"]!["stop_reason"]);
    }

    [Fact(Timeout = 30000)]
    public async Task Messages_ErrorsAreAnthropicShaped_AndCountTokensIsAnUnknownEndpoint()
    {
        var sim = await StartAsync();

        var notLoaded = await PostAsync(sim, "/v1/messages", new { model = Qwen, max_tokens = 8, messages = new[] { new { role = "user", content = "Hi" } } });
        var unknown = await PostAsync(sim, "/v1/messages", new { model = "no/such-model", max_tokens = 8, messages = new[] { new { role = "user", content = "Hi" } } });
        var countTokens = await PostAsync(sim, "/v1/messages/count_tokens", new { model = Qwen, messages = new[] { new { role = "user", content = "Hi" } } });

        Assert.Equal(HttpStatusCode.BadRequest, notLoaded.Status);
        Assert.True(JsonNode.DeepEquals(
            JsonNode.Parse("""{"type":"error","error":{"type":"invalid_request_error","message":"No models loaded. Please load a model in the developer page or use the 'lms load' command."}}"""),
            notLoaded.Body), notLoaded.Body.ToJsonString());
        Assert.Equal(HttpStatusCode.BadRequest, unknown.Status);
        Assert.Equal("error", (string?)unknown.Body["type"]);
        Assert.Contains("Invalid model identifier", (string?)unknown.Body["error"]!["message"]);
        Assert.Equal(HttpStatusCode.OK, countTokens.Status);
        Assert.Equal("Unexpected endpoint or method. (POST /v1/messages/count_tokens)", (string?)countTokens.Body["error"]);
        Assert.Equal(1, sim.State.NotLoadedAnswers);
    }

    // ---- /api/v1/chat --------------------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task NativeChat_IsStateful_ThroughResponseIds()
    {
        var sim = await StartAsync(null, Qwen);

        var first = await PostAsync(sim, "/api/v1/chat", new { model = Qwen, input = "My favourite colour is blue.", system_prompt = "Be brief." });
        var id = (string)first.Body["response_id"]!;
        var second = await PostAsync(sim, "/api/v1/chat", new { model = Qwen, input = new[] { new { type = "message", content = "Which colour?" } }, previous_response_id = id });
        var unstored = await PostAsync(sim, "/api/v1/chat", new { model = Qwen, input = "Joke?", store = false });
        var unknown = await PostAsync(sim, "/api/v1/chat", new { model = Qwen, input = "?", previous_response_id = "resp_unknown" });

        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal(Qwen, (string?)first.Body["model_instance_id"]);
        Assert.Equal($$"""[{"type":"message","content":"Hello from {{Qwen}}."}]""", first.Body["output"]!.ToJsonString());
        Assert.True((int)first.Body["stats"]!["input_tokens"]! > 0);
        Assert.NotNull(first.Body["stats"]!["tokens_per_second"]);
        Assert.StartsWith("resp_", id);
        Assert.Equal($"Continuing {id} with {Qwen}.", (string?)second.Body["output"]![0]!["content"]);
        Assert.NotEqual(id, (string?)second.Body["response_id"]);
        Assert.False(unstored.Body.AsObject().ContainsKey("response_id"));
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
        Assert.NotNull(unknown.Body["error"]!["message"]);
    }

    [Fact(Timeout = 30000)]
    public async Task NativeChat_Stream_RunsFromChatStartToChatEnd_WhoseIdContinues()
    {
        var sim = await StartAsync(null, Qwen);

        var events = await StreamEventsAsync(sim, "/api/v1/chat", new { model = Qwen, input = "Hello", stream = true });
        var result = events[^1].Data["result"]!;
        var next = await PostAsync(sim, "/api/v1/chat", new { model = Qwen, input = "And?", previous_response_id = (string)result["response_id"]! });

        Assert.Equal(
            ["chat.start", "prompt_processing.start", "prompt_processing.progress", "prompt_processing.end", "message.start", "message.delta", "message.end", "chat.end"],
            events.Select(e => e.Name).Distinct());
        Assert.All(events, e => Assert.Equal(e.Name, (string?)e.Data["type"]));
        Assert.Equal(Qwen, (string?)events[0].Data["model_instance_id"]);
        Assert.True(events.Count(e => e.Name == "message.delta") > 1);
        Assert.Equal($"Hello from {Qwen}.", string.Concat(events.Where(e => e.Name == "message.delta").Select(e => (string?)e.Data["content"])));
        Assert.Equal($"Hello from {Qwen}.", (string?)result["output"]![0]!["content"]);
        Assert.NotNull(result["stats"]);
        Assert.Equal(HttpStatusCode.OK, next.Status);
    }

    [Fact(Timeout = 30000)]
    public async Task NativeChat_ColdModel_WithJitOff_IsNoModelsLoaded()
    {
        var sim = await StartAsync();

        var (status, body) = await PostAsync(sim, "/api/v1/chat", new { model = Qwen, input = "Hello" });

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("No models loaded", (string?)body["error"]!["message"]);
        Assert.Equal(1, sim.State.NotLoadedAnswers);
    }

    // ---- WebSockets ----------------------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task WebSocket_EchoesInOrder_AndClosesWhenAsked()
    {
        var sim = await StartAsync();
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer sk-lm-host-a");
        await socket.ConnectAsync(new Uri($"ws://{sim.Url.Authority}/llm"), CancellationToken.None);

        var echoes = new List<JsonNode>();
        foreach (var text in new[] { "one", "two", """{"type":"rpcCall"}""" })
        {
            await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);
            echoes.Add(JsonNode.Parse(await ReceiveTextAsync(socket))!);
        }
        await socket.SendAsync("close-please"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
        var close = await socket.ReceiveAsync(new byte[1024], CancellationToken.None);
        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "ok", CancellationToken.None);

        Assert.Equal(
            ["""{"namespace":"llm","seq":1,"echo":"one"}""", """{"namespace":"llm","seq":2,"echo":"two"}""", """{"namespace":"llm","seq":3,"echo":"{\u0022type\u0022:\u0022rpcCall\u0022}"}"""],
            echoes.Select(e => e.ToJsonString()));
        Assert.Equal("""{"type":"rpcCall"}""", (string?)echoes[2]["echo"]);
        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, close.CloseStatus);
        Assert.Equal("bye", close.CloseStatusDescription);
        Assert.Equal(4, sim.State.WebSocketMessages);
        Assert.Equal(1, sim.State.WebSocketCloses);
        Assert.Equal("Bearer sk-lm-host-a", sim.State.LastWebSocketAuthorization);
    }

    [Fact(Timeout = 30000)]
    public async Task WebSocket_ClientClose_IsAnsweredWithAClose_OnEveryNamespace()
    {
        var sim = await StartAsync();
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://{sim.Url.Authority}/system"), CancellationToken.None);
        await socket.SendAsync("ping"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
        var echo = JsonNode.Parse(await ReceiveTextAsync(socket))!;

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", deadline.Token);
        var plainHttp = await _http.GetStringAsync(new Uri(sim.Url, "/system"));

        Assert.Equal("system", (string?)echo["namespace"]);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        await Eventually.Until(() => sim.State.WebSocketCloses == 1);
        Assert.Null(sim.State.LastWebSocketAuthorization);
        Assert.Contains("Unexpected endpoint or method. (GET /system)", plainHttp);
    }

    // ---- Authorization, request counts, kill ---------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task EachHost_RecordsTheAuthorizationItReceived_AndCountsRequestsPerPath()
    {
        var hostA = await StartAsync();
        var hostB = await StartAsync();

        foreach (var (host, token) in new[] { (hostA, "sk-lm-a"), (hostA, "sk-lm-a"), (hostB, "sk-lm-b") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(host.Url, "/v1/models"));
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            (await _http.SendAsync(request)).Dispose();
        }
        await _http.GetStringAsync(new Uri(hostB.Url, "/lmstudio-greeting"));

        Assert.Equal("Bearer sk-lm-a", hostA.State.LastAuthorization);
        Assert.Null(hostB.State.LastAuthorization); // the greeting came last, with no header
        Assert.Equal(2, hostA.State.RequestsTo("/v1/models"));
        Assert.Equal(1, hostB.State.RequestsTo("/v1/models"));
        Assert.Equal(1, hostB.State.RequestsTo("/lmstudio-greeting"));
        Assert.Equal(0, hostA.State.RequestsTo("/lmstudio-greeting"));
    }

    [Fact(Timeout = 30000)]
    public async Task Kill_DropsOpenStreams_AndThePortRefusesConnections()
    {
        var sim = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), TokenDelay = TimeSpan.FromMilliseconds(100), StreamEvents = 50 }, Qwen);
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(sim.Url, "/v1/chat/completions"))
        {
            Content = JsonContent.Create(new { model = Qwen, stream = true, messages = new[] { new { role = "user", content = "hi" } } }),
        };
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        await reader.ReadLineAsync();

        var killed = Stopwatch.GetTimestamp();
        await sim.KillAsync();
        var killTook = Stopwatch.GetElapsedTime(killed);

        await Assert.ThrowsAnyAsync<IOException>(() => reader.ReadToEndAsync());
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => _http.GetAsync(new Uri(sim.Url, "/lmstudio-greeting")));
        Assert.Equal(SocketError.ConnectionRefused, Assert.IsType<SocketException>(refused.InnerException).SocketErrorCode);
        Assert.True(killTook < TimeSpan.FromSeconds(1), $"kill took {killTook}");
        await sim.DisposeAsync(); // must not throw after a kill (and again in DisposeAsync of this class)
    }

    // ---- Fake lms ------------------------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task FakeLms_TakesAtLeast200MsPerRun_ByDefault()
    {
        var sim = await StartAsync();
        using var lms = new FakeLms(sim.Url);
        var started = Stopwatch.GetTimestamp();

        var ps = await RunAsync(lms, "ps", "--json");

        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(200), $"took {Stopwatch.GetElapsedTime(started)}");
        Assert.Equal(0, ps.ExitCode);
        Assert.Equal("[]", ps.Stdout.Trim());
        Assert.Equal(1, lms.CallsOf("ps"));
    }

    // ---- Helpers -------------------------------------------------------------------------------------------------

    private sealed record LmsRun(int ExitCode, string Stdout, string Stderr);

    private static async Task<LmsRun> RunAsync(FakeLms lms, params string[] args)
    {
        var start = new ProcessStartInfo(lms.Path) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await process.WaitForExitAsync(deadline.Token);
        return new LmsRun(process.ExitCode, await stdout, await stderr);
    }

    private sealed record SseEvent(string Name, JsonNode Data);

    /// <summary>Posts and reads the whole event stream: "event: name" and "data: json" per blank-line-separated block.</summary>
    private async Task<List<SseEvent>> StreamEventsAsync(SimulatorApp sim, string path, object body)
    {
        using var response = await _http.PostAsJsonAsync(new Uri(sim.Url, path), body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        return text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(block =>
        {
            var lines = block.Split('\n');
            var name = lines.Single(l => l.StartsWith("event: ", StringComparison.Ordinal))["event: ".Length..];
            var data = lines.Single(l => l.StartsWith("data: ", StringComparison.Ordinal))["data: ".Length..];
            return new SseEvent(name, JsonNode.Parse(data)!);
        }).ToList();
    }

    private static async Task<string> ReceiveTextAsync(ClientWebSocket socket)
    {
        var buffer = new byte[4096];
        using var message = new MemoryStream();
        WebSocketReceiveResult received;
        do
        {
            received = await socket.ReceiveAsync(buffer, CancellationToken.None);
            message.Write(buffer, 0, received.Count);
        } while (!received.EndOfMessage);
        Assert.Equal(WebSocketMessageType.Text, received.MessageType);
        return Encoding.UTF8.GetString(message.ToArray());
    }
}
