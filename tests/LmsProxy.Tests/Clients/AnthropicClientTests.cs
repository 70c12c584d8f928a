using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Clients;

/// <summary>
/// The official Anthropic .NET SDK (13.14.0), changed only in its base URL, against the proxy in front of the simulated
/// LM Studio with JIT off: every model starts cold, so without the proxy's load each call would get "No models loaded".
/// The SDK's retries are off, so a failure on the first attempt is seen, not hidden by a second one.
/// </summary>
public sealed class AnthropicClientTests
{
    private const string Qwen = "qwen/qwen3-8b";
    private const string QwenAnswer = "Hello from qwen/qwen3-8b.";

    private static Task<GateEnvironment> StartAsync(SimulatorOptions? simulator = null, Dictionary<string, string?>? settings = null)
    {
        var all = new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" };
        foreach (var (key, value) in settings ?? []) all[key] = value;
        return GateEnvironment.StartAsync(simulator ?? new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200) }, all);
    }

    private static AnthropicClient Client(GateEnvironment env, HttpClient? http = null) => http is null
        ? new AnthropicClient { BaseUrl = env.Proxy.Url.ToString(), ApiKey = "sk-ant-anything", MaxRetries = 0, Timeout = TimeSpan.FromSeconds(30) }
        : new AnthropicClient { BaseUrl = env.Proxy.Url.ToString(), ApiKey = "sk-ant-anything", MaxRetries = 0, Timeout = TimeSpan.FromSeconds(30), HttpClient = http };

    private static MessageCreateParams Ask(string model, string text, IReadOnlyList<ToolUnion>? tools = null)
    {
        var parameters = new MessageCreateParams { Model = model, MaxTokens = 256, Messages = [new UserMessageParam(text)] };
        return tools is null ? parameters : parameters with { Tools = tools };
    }

    private static ToolUnion WeatherTool => new Tool
    {
        Name = "get_weather",
        Description = "The weather in a city",
        InputSchema = new InputSchema
        {
            Properties = new Dictionary<string, JsonElement> { ["location"] = JsonDocument.Parse("""{"type":"string"}""").RootElement },
            Required = ["location"],
        },
    };

    /// <summary>The model was loaded once, by the proxy, and LM Studio never had to refuse a request.</summary>
    private static void AssertLoadedOnceWithoutRefusal(GateEnvironment env, string model = Qwen)
    {
        Assert.Equal(1, env.Simulator.State.LoadCount(model));
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
    }

    // ---- messages ------------------------------------------------------------------------------------------------

    [Fact(Timeout = 60000)]
    public async Task Message_NonStreaming_ColdModel_IsLoadedOnceAndAnswered()
    {
        await using var env = await StartAsync();
        using var client = Client(env);

        var message = await client.Messages.Create(Ask(Qwen, "Hello"));

        var block = Assert.Single(message.Content);
        Assert.True(block.TryPickText(out var text), $"expected a text block, got {block.Json}");
        Assert.Equal(QwenAnswer, text!.Text);
        Assert.Equal("end_turn", message.StopReason!.Raw());
        Assert.Equal(Qwen, message.Model.Raw());
        Assert.StartsWith("msg_", message.ID, StringComparison.Ordinal);
        Assert.True(message.Usage.InputTokens > 0);
        AssertLoadedOnceWithoutRefusal(env);
    }

    [Fact(Timeout = 60000)]
    public async Task Message_Streaming_ColdModel_TextDeltasArriveOneByOne()
    {
        var tokenDelay = TimeSpan.FromMilliseconds(150);
        await using var env = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200), TokenDelay = tokenDelay, StreamEvents = 5 });
        using var client = Client(env);
        var clock = Stopwatch.StartNew();

        var kinds = new List<string>();
        var deltas = new List<(TimeSpan At, string Text)>();
        await foreach (var streamEvent in client.Messages.CreateStreaming(Ask(Qwen, "Hello")))
        {
            kinds.Add(streamEvent.Type.Raw());
            if (streamEvent.TryPickContentBlockDelta(out var delta) && delta!.Delta.TryPickText(out var piece)) deltas.Add((clock.Elapsed, piece!.Text));
        }
        var ended = clock.Elapsed;

        Assert.Equal(QwenAnswer, string.Concat(deltas.Select(d => d.Text)));
        Assert.Equal(5, deltas.Count);
        Assert.Equal("message_start", kinds[0]);
        Assert.Equal("content_block_start", kinds[1]);
        Assert.Equal("message_stop", kinds[^1]);
        Assert.Equal(5, kinds.Count(k => k == "content_block_delta"));
        // Five deltas 150 ms apart on the server: the client sees them spread out, not in one burst at the end.
        var spread = deltas[^1].At - deltas[0].At;
        Assert.True(spread >= TimeSpan.FromMilliseconds(400), $"the text deltas arrived within {spread.TotalMilliseconds:0} ms of each other: buffered, not streamed");
        Assert.True(ended - deltas[0].At >= TimeSpan.FromMilliseconds(400), "the first text arrived only as the stream ended");
        AssertLoadedOnceWithoutRefusal(env);
    }

    [Fact(Timeout = 60000)]
    public async Task ToolUse_ThenToolResult_IsAnsweredWithText()
    {
        await using var env = await StartAsync();
        using var client = Client(env);

        var first = await client.Messages.Create(Ask(Qwen, "What is the weather in Paris?", [WeatherTool]));

        Assert.Equal("tool_use", first.StopReason!.Raw());
        var block = Assert.Single(first.Content);
        Assert.True(block.TryPickToolUse(out var toolUse), $"expected a tool_use block, got {block.Json}");
        Assert.Equal("get_weather", toolUse!.Name);
        Assert.Equal("Paris", toolUse.Input["location"].GetString());
        Assert.StartsWith("toolu_", toolUse.ID, StringComparison.Ordinal);

        var followUp = new MessageCreateParams
        {
            Model = Qwen,
            MaxTokens = 256,
            Tools = [WeatherTool],
            Messages =
            [
                new UserMessageParam("What is the weather in Paris?"),
                new AssistantMessageParam(new List<ContentBlockParam> { new ToolUseBlockParam { ID = toolUse.ID, Name = toolUse.Name, Input = toolUse.Input } }),
                new UserMessageParam(new List<ContentBlockParam> { new ToolResultBlockParam(toolUse.ID) { Content = "18 °C and sunny" } }),
            ],
        };
        var second = await client.Messages.Create(followUp);

        Assert.Equal("end_turn", second.StopReason!.Raw());
        Assert.True(Assert.Single(second.Content).TryPickText(out var answer));
        Assert.Equal(QwenAnswer, answer!.Text);
        AssertLoadedOnceWithoutRefusal(env);
    }

    // ---- errors the proxy answers itself, in Anthropic's shape ---------------------------------------------------

    [Fact(Timeout = 60000)]
    public async Task UnknownModel_RaisesTheSdksNotFoundException_AndNothingLoads()
    {
        await using var env = await StartAsync();
        using var client = Client(env);

        var error = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Create(Ask("no-such/model", "Hello")));

        Assert.Equal(HttpStatusCode.NotFound, error.StatusCode);
        Assert.Equal("not_found_error", error.Type?.Raw());
        Assert.Contains("no-such/model", error.ApiMessage ?? error.Message, StringComparison.Ordinal);
        Assert.Equal(0, env.Simulator.State.TotalLoads);

        // A streaming call fails the same way, before any event.
        var streaming = await Assert.ThrowsAsync<AnthropicNotFoundException>(async () =>
        {
            await foreach (var _ in client.Messages.CreateStreaming(Ask("no-such/model", "Hello"))) { }
        });
        Assert.Equal("not_found_error", streaming.Type?.Raw());
    }

    [Fact(Timeout = 60000)]
    public async Task UnknownModel_RawBody_IsAnthropicsErrorShape()
    {
        await using var env = await StartAsync();

        using var response = await env.Client.PostAsync("/v1/messages", Json.Body("""{"model":"no-such/model","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"""));
        var body = await response.ReadJson();

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal("not_found_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("no-such/model", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory(Timeout = 60000)]
    [InlineData("""{"model":"qwen/qwen3-8b","max_tokens":16,"messages":[""")]
    [InlineData("""[1,2,3]""")]
    [InlineData("""{"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}""")]
    [InlineData("""{"model":42,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}""")]
    public async Task MalformedBody_Gets400_InAnthropicsErrorShape(string json)
    {
        await using var env = await StartAsync();

        using var response = await env.Client.PostAsync("/v1/messages", Json.Body(json));
        var text = await response.Content.ReadAsStringAsync();
        using var body = JsonDocument.Parse(text);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("error", body.RootElement.GetProperty("type").GetString());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()), text);
        Assert.Equal(0, env.Simulator.State.TotalLoads);
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 60000)]
    public async Task EmptyModelName_RaisesTheSdksBadRequestException()
    {
        await using var env = await StartAsync();
        using var client = Client(env);

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Ask("", "Hello")));

        Assert.Equal(HttpStatusCode.BadRequest, error.StatusCode);
        Assert.Equal("invalid_request_error", error.Type?.Raw());
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 60000)]
    public async Task WithApiKeys_TheSdksXApiKey_IsAccepted_AndAWrongOneRaisesTheSdksAuthenticationError()
    {
        const string key = "sk-lmsproxy-anthropic-test";
        await using var env = await StartAsync(settings: new() { ["LmsProxy:ApiKeys:0"] = key });
        using var wrong = new AnthropicClient { BaseUrl = env.Proxy.Url.ToString(), ApiKey = "sk-not-the-proxy-key", MaxRetries = 0 };
        using var right = new AnthropicClient { BaseUrl = env.Proxy.Url.ToString(), ApiKey = key, MaxRetries = 0 };

        var error = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => wrong.Messages.Create(Ask(Qwen, "Hello")));
        var message = await right.Messages.Create(Ask(Qwen, "Hello"));

        Assert.Equal("authentication_error", error.Type?.Raw());
        Assert.Equal(1, env.Simulator.State.InferenceRequests); // only the accepted call reached LM Studio
        Assert.True(Assert.Single(message.Content).TryPickText(out var text));
        Assert.Equal(QwenAnswer, text!.Text);
    }

    [Fact(Timeout = 60000)]
    public async Task BodyOverTheLimit_RaisesTheSdksContentTooLargeException()
    {
        await using var env = await StartAsync(settings: new() { ["LmsProxy:MaxRequestBodyBytes"] = "2048" });
        using var client = Client(env);

        var error = await Assert.ThrowsAsync<AnthropicContentTooLargeException>(() => client.Messages.Create(Ask(Qwen, new string('x', 5000))));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, error.StatusCode);
        Assert.Equal("request_too_large", error.Type?.Raw());
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Fact(Timeout = 60000)]
    public async Task HoldTimeout_RaisesTheSdksOverloadedError()
    {
        await using var env = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3) }, new() { ["LmsProxy:HoldTimeout"] = "00:00:00.500" });
        using var client = Client(env);

        var error = await Assert.ThrowsAsync<AnthropicServiceUnavailableException>(() => client.Messages.Create(Ask(Qwen, "Hello")));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, error.StatusCode);
        Assert.Equal("overloaded_error", error.Type?.Raw());
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
    }

    [Fact(Timeout = 60000)]
    public async Task KeepAlive_FailureAfterThe200_ReachesTheSdkAsAnErrorEvent()
    {
        await using var env = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3) },
            new(KeepAlive) { ["LmsProxy:HoldTimeout"] = "00:00:01.200" });
        using var raw = await env.Client.PostAsync("/v1/messages",
            Json.Body("""{"model":"qwen/qwen3-8b","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""));
        var body = await raw.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, raw.StatusCode);
        // The wait's state as an SSE comment (every SSE reader skips it), then the ping.
        Assert.Matches("^: loading qwen/qwen3-8b[^\n]* queue 1\nevent: ping\n", body);
        var errorEvent = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Last();
        Assert.StartsWith("event: error\ndata: ", errorEvent, StringComparison.Ordinal);
        var data = JsonDocument.Parse(errorEvent["event: error\ndata: ".Length..]).RootElement;
        Assert.Equal("error", data.GetProperty("type").GetString());
        Assert.Equal("overloaded_error", data.GetProperty("error").GetProperty("type").GetString());

        // The SDK, reading the same kind of stream, raises rather than ending quietly with no text.
        using var client = Client(env);
        var events = new List<string>();
        var failure = await Assert.ThrowsAnyAsync<AnthropicException>(async () =>
        {
            await foreach (var streamEvent in client.Messages.CreateStreaming(Ask("google/gemma-3-1b", "Hello"))) events.Add(streamEvent.Type.Raw());
        });
        Assert.Empty(events);
        Assert.Contains("not ready", failure.Message, StringComparison.OrdinalIgnoreCase);
    }

    // ---- count_tokens --------------------------------------------------------------------------------------------

    [Fact(Timeout = 60000)]
    public async Task CountTokens_ThroughTheSdk_IsAnsweredByTheProxy_WithoutLoadingAModel()
    {
        await using var env = await StartAsync();
        using var client = Client(env);
        var shortText = "How many tokens is this short question?";
        var longText = string.Concat(Enumerable.Repeat("A much longer question, repeated to be long. ", 20));

        var few = await client.Messages.CountTokens(new MessageCountTokensParams { Model = Qwen, Messages = [new UserMessageParam(shortText)] });
        var many = await client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = Qwen,
            Messages = [new UserMessageParam(longText)],
            Tools = [new Tool { Name = "get_weather", Description = "The weather in a city", InputSchema = new InputSchema() }],
        });

        // An estimate: about a token per four characters, so in a plausible range and growing with the text.
        Assert.InRange(few.InputTokens, shortText.Length / 8, shortText.Length);
        Assert.InRange(many.InputTokens, longText.Length / 8, longText.Length * 2);
        Assert.True(many.InputTokens > few.InputTokens * 5, $"{many.InputTokens} tokens for {longText.Length} chars vs {few.InputTokens} for {shortText.Length}");
        Assert.Equal(0, env.Simulator.State.TotalLoads);
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
        Assert.Equal(0, env.Simulator.State.RequestsTo("/v1/messages/count_tokens"));
    }

    [Fact(Timeout = 60000)]
    public async Task CountTokens_RawHttp_SaysItIsAnEstimate_AndNeverReachesLmStudio()
    {
        await using var env = await StartAsync();

        using var response = await env.Client.PostAsync("/v1/messages/count_tokens",
            Json.Body("""{"model":"qwen/qwen3-8b","messages":[{"role":"user","content":"Sixteen characters plus more"}]}"""));
        var body = await response.ReadJson();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Headers.Contains("X-LmsProxy-Estimate"), "the count is an estimate and says so");
        Assert.Equal(JsonValueKind.Number, body.GetProperty("input_tokens").ValueKind);
        Assert.InRange(body.GetProperty("input_tokens").GetInt32(), 1, 28);
        Assert.False(body.TryGetProperty("error", out _), "LM Studio's 200 'Unexpected endpoint' must not pass as a count");
        Assert.Equal(0, env.Simulator.State.TotalLoads);
        Assert.Equal(0, env.Simulator.State.RequestsTo("/v1/messages/count_tokens"));

        // Without messages it is a client error, in Anthropic's shape.
        using var bad = await env.Client.PostAsync("/v1/messages/count_tokens", Json.Body("""{"model":"qwen/qwen3-8b"}"""));
        var badBody = await bad.ReadJson();
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("error", badBody.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", badBody.GetProperty("error").GetProperty("type").GetString());
    }

    // ---- keep-alive while the model loads ------------------------------------------------------------------------

    private static Dictionary<string, string?> KeepAlive => new()
    {
        ["LmsProxy:StreamKeepAlive"] = "comment",
        ["LmsProxy:KeepAliveAfter"] = "00:00:00.400",
    };

    [Fact(Timeout = 60000)]
    public async Task KeepAlive_RawReader_SeesPingEventsBeforeMessageStart()
    {
        await using var env = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) }, KeepAlive);
        var clock = Stopwatch.StartNew();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/messages")
        {
            Content = Json.Body("""{"model":"qwen/qwen3-8b","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""),
        };
        using var response = await env.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var headersAfter = clock.Elapsed;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<string>();
        while (await reader.ReadLineAsync() is { } line) lines.Add(line);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("comment", response.Headers.GetValues("X-LmsProxy-Keep-Alive").Single());
        Assert.True(headersAfter < TimeSpan.FromSeconds(1.4), $"the 200 came after {headersAfter.TotalMilliseconds:0} ms, not when keep-alives began");
        var firstPing = lines.IndexOf("event: ping");
        var messageStart = lines.IndexOf("event: message_start");
        Assert.True(firstPing >= 0, "no ping: " + string.Join(" | ", lines));
        Assert.True(messageStart > firstPing, "the ping comes before message_start: " + string.Join(" | ", lines));
        Assert.Equal("ping", JsonDocument.Parse(lines[firstPing + 1]["data: ".Length..]).RootElement.GetProperty("type").GetString());
        Assert.Equal("event: message_stop", lines.Last(l => l.StartsWith("event: ", StringComparison.Ordinal)));
        var text = lines.Where(l => l.StartsWith("data: ", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l["data: ".Length..]).RootElement)
            .Where(e => e.GetProperty("type").GetString() == "content_block_delta")
            .Select(e => e.GetProperty("delta").GetProperty("text").GetString());
        Assert.Equal(QwenAnswer, string.Concat(text));
        AssertLoadedOnceWithoutRefusal(env);
    }

    [Fact(Timeout = 60000)]
    public async Task KeepAlive_SdkStreaming_ParsesPastThePings_AndYieldsTheWholeText()
    {
        await using var env = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) }, KeepAlive);
        var recorder = new HeaderRecorder();
        using var http = new HttpClient(recorder) { Timeout = TimeSpan.FromSeconds(30) };
        using var client = Client(env, http);

        var kinds = new List<string>();
        var text = new StringBuilder();
        await foreach (var streamEvent in client.Messages.CreateStreaming(Ask(Qwen, "Hello")))
        {
            kinds.Add(streamEvent.Type.Raw());
            if (streamEvent.TryPickContentBlockDelta(out var delta) && delta!.Delta.TryPickText(out var piece)) text.Append(piece!.Text);
        }

        Assert.Equal("comment", recorder.KeepAlive); // the stream the SDK parsed did begin with keep-alives
        Assert.Equal(QwenAnswer, text.ToString());
        Assert.Equal("message_start", kinds[0]);
        Assert.Equal("message_stop", kinds[^1]);
        AssertLoadedOnceWithoutRefusal(env);
    }

    /// <summary>Notes the proxy's keep-alive header of the last response the SDK received.</summary>
    private sealed class HeaderRecorder() : DelegatingHandler(new SocketsHttpHandler())
    {
        public string? KeepAlive { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            KeepAlive = response.Headers.TryGetValues("X-LmsProxy-Keep-Alive", out var values) ? values.Single() : null;
            return response;
        }
    }
}
