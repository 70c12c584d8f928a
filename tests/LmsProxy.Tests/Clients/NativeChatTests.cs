using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Clients;

/// <summary>
/// LM Studio's own stateful chat, POST /api/v1/chat, through the proxy from a cold model (JIT off): a turn returns a
/// response_id, the next turn continues it with previous_response_id (the simulated LM Studio keeps that state and
/// rejects ids it never made), and a streamed turn is a series of named events from chat.start to chat.end.
/// </summary>
public sealed class NativeChatTests
{
    private const string Qwen = "qwen/qwen3-8b";

    private static Task<GateEnvironment> StartAsync(SimulatorOptions? simulator = null) =>
        GateEnvironment.StartAsync(simulator ?? new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200) },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });

    private static StringContent Turn(string input, string? previous = null, bool stream = false) => Json.Body(JsonSerializer.Serialize(
        previous is null ? new { model = Qwen, input, stream } : (object)new { model = Qwen, input, stream, previous_response_id = previous }));

    private static string OutputText(JsonElement result) =>
        string.Concat(result.GetProperty("output").EnumerateArray().Where(o => o.GetProperty("type").GetString() == "message").Select(o => o.GetProperty("content").GetString()));

    [Fact(Timeout = 60000)]
    public async Task FirstTurn_ReturnsAResponseId_AndTheSecondTurnContinuesIt()
    {
        await using var env = await StartAsync();

        using var first = await env.Client.PostAsync("/api/v1/chat", Turn("My name is Ada."));
        var firstBody = await first.ReadJson();
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var responseId = firstBody.GetProperty("response_id").GetString();
        Assert.StartsWith("resp_", responseId, StringComparison.Ordinal);
        Assert.Equal("Hello from qwen/qwen3-8b.", OutputText(firstBody));

        using var second = await env.Client.PostAsync("/api/v1/chat", Turn("What is my name?", responseId));
        var secondBody = await second.ReadJson();

        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal($"Continuing {responseId} with qwen/qwen3-8b.", OutputText(secondBody));
        Assert.NotEqual(responseId, secondBody.GetProperty("response_id").GetString());
        Assert.Equal(1, env.Simulator.State.LoadCount(Qwen));
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
    }

    [Fact(Timeout = 60000)]
    public async Task UnknownPreviousResponseId_IsLmStudiosRefusal_PassedOnAsAnError()
    {
        await using var env = await StartAsync();

        using var response = await env.Client.PostAsync("/api/v1/chat", Turn("And then?", "resp_made_up_by_the_client"));
        var body = await response.ReadJson();

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("resp_made_up_by_the_client", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, env.Simulator.State.LoadCount(Qwen));
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
    }

    [Fact(Timeout = 60000)]
    public async Task Streaming_EventsArriveInOrder_EndingWithChatEndThatCarriesTheResponseId()
    {
        var tokenDelay = TimeSpan.FromMilliseconds(60);
        await using var env = await StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200), TokenDelay = tokenDelay, StreamEvents = 5 });
        var clock = Stopwatch.StartNew();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/chat") { Content = Turn("Hello", stream: true) };
        using var response = await env.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ReadEventsAsync(response, clock);

        var names = events.Select(e => e.Name).ToList();
        Assert.Equal("chat.start", names[0]);
        Assert.Equal("chat.end", names[^1]);
        Assert.Single(names, n => n == "chat.start");
        Assert.Single(names, n => n == "chat.end");
        // No load events: the proxy loaded the model before LM Studio saw the request.
        Assert.DoesNotContain(names, n => n.StartsWith("model_load.", StringComparison.Ordinal));
        AssertInOrder(names, "chat.start", "prompt_processing.start", "prompt_processing.end", "message.start", "message.delta", "message.end", "chat.end");
        Assert.True(names.LastIndexOf("message.delta") < names.IndexOf("message.end"), "every delta comes before message.end");
        // Each event's data names its own type, as LM Studio's do.
        Assert.All(events, e => Assert.Equal(e.Name, e.Data.GetProperty("type").GetString()));

        var deltas = events.Where(e => e.Name == "message.delta").ToList();
        Assert.Equal("Hello from qwen/qwen3-8b.", string.Concat(deltas.Select(d => d.Data.GetProperty("content").GetString())));
        // Streamed, not buffered: the first event arrived well before the last (about 12 events, 60 ms apart).
        Assert.True(events[^1].At - events[0].At >= TimeSpan.FromMilliseconds(300),
            $"all events arrived within {(events[^1].At - events[0].At).TotalMilliseconds:0} ms");

        var result = events[^1].Data.GetProperty("result");
        var responseId = result.GetProperty("response_id").GetString();
        Assert.StartsWith("resp_", responseId, StringComparison.Ordinal);
        Assert.Equal("Hello from qwen/qwen3-8b.", OutputText(result));

        // The id from chat.end continues the conversation at once.
        using var next = await env.Client.PostAsync("/api/v1/chat", Turn("Go on.", responseId));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        Assert.Equal($"Continuing {responseId} with qwen/qwen3-8b.", OutputText(await next.ReadJson()));
        Assert.Equal(1, env.Simulator.State.LoadCount(Qwen));
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
    }

    private static void AssertInOrder(List<string> names, params string[] expected)
    {
        var positions = expected.Select(e => names.IndexOf(e)).ToList();
        Assert.DoesNotContain(-1, positions);
        Assert.True(positions.SequenceEqual(positions.Order()), $"expected {string.Join(" < ", expected)} in {string.Join(", ", names)}");
    }

    /// <summary>Server-sent events as they arrive: each "event:" name with its "data:" JSON and the time it was read.</summary>
    private static async Task<List<(string Name, JsonElement Data, TimeSpan At)>> ReadEventsAsync(HttpResponseMessage response, Stopwatch clock)
    {
        var events = new List<(string, JsonElement, TimeSpan)>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        string? name = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line["event: ".Length..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                events.Add((name ?? "", JsonDocument.Parse(line["data: ".Length..]).RootElement.Clone(), clock.Elapsed));
                name = null;
            }
        }
        return events;
    }
}
