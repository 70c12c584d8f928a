using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using OpenAI;
using OpenAI.Chat;

namespace LmsProxy.Tests.Waiting;

/// <summary>What a waiting client is told: its place and the load's progress in keep-alive comments or reasoning deltas, spaces before a JSON answer, and its queue in /status.</summary>
public sealed partial class WaitingClientsTests
{
    private const string Model = "qwen/qwen3-8b";

    private static Dictionary<string, string?> Settings(string streamKeepAlive = "off", bool nonStreaming = false) => new()
    {
        ["LmsProxy:StreamKeepAlive"] = streamKeepAlive,
        ["LmsProxy:NonStreamingKeepAlive"] = nonStreaming ? "true" : "false",
        ["LmsProxy:KeepAliveAfter"] = "00:00:00.300",
        ["LmsProxy:KeepAliveInterval"] = "00:00:00.400",
    };

    private static async Task<List<string>> ReadLinesAsync(HttpResponseMessage response)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<string>();
        while (await reader.ReadLineAsync() is { } line) lines.Add(line);
        return lines;
    }

    [Fact(Timeout = 30000)]
    public async Task CommentKeepAlives_CarryTheLoadsPercentage_TheTimeLeft_AndEachRequestsPlace()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3) }, Settings("comment"));
        using var second = env.Proxy.Client();

        using var firstResponse = await env.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat(Model, stream: true) }, HttpCompletionOption.ResponseHeadersRead);
        var secondRead = Task.Run(async () =>
        {
            using var response = await second.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat(Model, stream: true) }, HttpCompletionOption.ResponseHeadersRead);
            return await ReadLinesAsync(response);
        });
        var first = await ReadLinesAsync(firstResponse);
        var secondLines = await secondRead;

        var comments = first.Select(l => CommentLine().Match(l)).Where(m => m.Success).ToList();
        Assert.True(comments.Count >= 3, string.Join(" | ", first));
        var percents = comments.Where(m => m.Groups["pct"].Success).Select(m => int.Parse(m.Groups["pct"].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(percents.Count >= 2 && percents[^1] > percents[0], "the percentage rises: " + string.Join(", ", percents));
        Assert.Contains(comments, m => m.Groups["eta"].Success);
        Assert.All(comments, m => Assert.Equal("1", m.Groups["queue"].Value));
        Assert.Contains(secondLines, l => CommentLine().Match(l) is { Success: true } m && m.Groups["queue"].Value == "2");
        Assert.Equal("data: [DONE]", first.Last(l => l.Length > 0));
        Assert.Equal("data: [DONE]", secondLines.Last(l => l.Length > 0));
    }

    [Fact(Timeout = 30000)]
    public async Task ReasoningMode_SendsTheWaitAsReasoningContent_AndTheAnswerStillArrivesWhole()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2) }, Settings("reasoning"));

        using var response = await env.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat(Model, stream: true) }, HttpCompletionOption.ResponseHeadersRead);
        var lines = await ReadLinesAsync(response);
        var chunks = lines.Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l[6..]).RootElement).ToList();
        var thinking = chunks.Select(c => c.GetProperty("choices")[0].GetProperty("delta")).Where(d => d.TryGetProperty("reasoning_content", out _))
            .Select(d => d.GetProperty("reasoning_content").GetString()!).ToList();
        var content = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("delta")).Where(d => d.TryGetProperty("content", out _)).Select(d => d.GetProperty("content").GetString()));

        Assert.Equal("reasoning", response.Headers.GetValues("X-LmsProxy-Keep-Alive").Single());
        Assert.True(thinking.Count >= 2, string.Join(" | ", lines));
        Assert.Matches(@"^Loading qwen/qwen3-8b: \d+%, about \d+ s left\.\n$", thinking[^1]);
        Assert.Equal("Hello token1 token2 token3 token4", content);
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
    }

    [Fact(Timeout = 30000)]
    public async Task NonStreamingKeepAlive_Sends200AndSpacesAtOnce_ThenTheBody_WhichTheOpenAiClientParses()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2) }, Settings(nonStreaming: true));
        var started = Stopwatch.GetTimestamp();

        using var response = await env.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat(Model) }, HttpCompletionOption.ResponseHeadersRead);
        var headersAfter = Stopwatch.GetElapsedTime(started);
        var body = await response.Content.ReadAsStringAsync();
        await env.UnloadAsync(Model);
        var chat = new ChatClient(Model, new ApiKeyCredential("lm-studio"), new OpenAIClientOptions { Endpoint = new Uri(env.Proxy.Url, "/v1") });
        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("hi")]);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(headersAfter < TimeSpan.FromSeconds(1.5), $"the 200 came after {headersAfter.TotalMilliseconds:0} ms, not before the load ended");
        Assert.Matches("^ {2,}\\{", body);
        Assert.Equal("chat.completion", JsonDocument.Parse(body).RootElement.GetProperty("object").GetString());
        Assert.Equal("Hello from qwen/qwen3-8b.", completion.Content[0].Text);
        Assert.Equal(2, env.Simulator.State.LoadCount(Model)); // the client's answer, too, came after a held load
    }

    [Fact(Timeout = 30000)]
    public async Task NonStreamingKeepAlive_FailureAfterThe200_IsTheErrorJsonInTheProtocolsShape()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3) },
            new Dictionary<string, string?>(Settings(nonStreaming: true)) { ["LmsProxy:HoldTimeout"] = "00:00:01.200" });

        using var openAi = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        var openAiBody = await openAi.Content.ReadAsStringAsync();
        using var anthropic = await env.Client.PostAsync("/v1/messages", Json.Body("""{"model":"qwen/qwen3-8b","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"""));
        var anthropicBody = await anthropic.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, openAi.StatusCode);
        Assert.StartsWith(" ", openAiBody, StringComparison.Ordinal);
        var error = JsonDocument.Parse(openAiBody).RootElement.GetProperty("error");
        Assert.Equal("model_loading", error.GetProperty("code").GetString());
        Assert.Contains("was not ready within", error.GetProperty("message").GetString());
        Assert.Equal(HttpStatusCode.OK, anthropic.StatusCode);
        Assert.Equal("error", JsonDocument.Parse(anthropicBody).RootElement.GetProperty("type").GetString());
    }

    [Fact(Timeout = 30000)]
    public async Task Status_ListsEachWaitingRequest_WithItsPlaceAgeAndWhatItWaitsFor()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2) });
        var clients = Enumerable.Range(0, 3).Select(_ => env.Proxy.Client()).ToList();
        var requests = new List<Task<HttpResponseMessage>>();
        foreach (var client in clients)
        {
            requests.Add(client.PostAsync("/v1/chat/completions", Json.Chat(Model)));
            await Eventually.Until(() => env.Proxy.HeldNow == requests.Count);
        }

        var queue = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("queues").EnumerateArray().Single();
        var waiters = queue.GetProperty("waiters").EnumerateArray().ToList();
        foreach (var response in await Task.WhenAll(requests)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var after = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("queues");

        Assert.Equal(Model, queue.GetProperty("model").GetString());
        Assert.Equal("load", queue.GetProperty("waitingFor").GetString());
        Assert.Equal([1, 2, 3], waiters.Select(w => w.GetProperty("position").GetInt32()));
        var ages = waiters.Select(w => w.GetProperty("ageMs").GetDouble()).ToList();
        Assert.True(ages[0] > ages[1] && ages[1] > ages[2], "the first to come has waited longest: " + string.Join(", ", ages));
        Assert.Equal(0, after.GetArrayLength());
    }

    [Fact(Timeout = 30000)]
    public async Task Status_DuringASwap_SaysTheRequestWaitsForASwap_AndTheCommentSaysSo()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) },
            new Dictionary<string, string?>(Settings("comment")) { ["LmsProxy:Capacity:MaxLoadedModels"] = "1" });
        (await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"))).Dispose();

        using var response = await env.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat(Model, stream: true) }, HttpCompletionOption.ResponseHeadersRead);
        var queue = (await (await env.Proxy.Client().GetAsync("/status")).ReadJson()).GetProperty("queues").EnumerateArray().Single();
        var lines = await ReadLinesAsync(response);

        Assert.Equal("swap", queue.GetProperty("waitingFor").GetString());
        Assert.Contains(lines, l => l.StartsWith(": swapping in qwen/qwen3-8b", StringComparison.Ordinal));
        Assert.Equal("data: [DONE]", lines.Last(l => l.Length > 0));
        Assert.Equal(1, env.Simulator.State.LoadCount(Model));
    }

    /// <summary>Room for one model: the third model asked for waits for the load under way and for the one queued before it.</summary>
    [Fact(Timeout = 40000)]
    public async Task Eta_OfAModelQueuedBehindAnother_CountsTheLoadAheadAndTheQueuedOne()
    {
        const string Gemma = "google/gemma-3-1b", Embed = "text-embedding-nomic-embed-text-v1.5", Instruct = "qwen/qwen3-8b-instruct";
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1) },
            new Dictionary<string, string?> { ["LmsProxy:Capacity:MaxLoadedModels"] = "1" });
        Task<HttpResponseMessage> Ask(HttpClient client, string model) => model == Embed
            ? client.PostAsync("/v1/embeddings", Json.Body($$"""{"model":"{{model}}","input":"hi"}"""))
            : client.PostAsync("/v1/chat/completions", Json.Chat(model));
        // Each one's load time is learned; the instruct model stays loaded.
        foreach (var model in new[] { Gemma, Model, Embed, Instruct }) (await Ask(env.Client, model)).Dispose();

        var requests = new List<Task<HttpResponseMessage>>();
        foreach (var model in new[] { Gemma, Model, Embed })
        {
            requests.Add(Ask(env.Proxy.Client(), model));
            await Task.Delay(100); // in this order
        }
        await Eventually.Until(() => env.Proxy.HeldNow == 3, TimeSpan.FromSeconds(1));
        var queues = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("queues").EnumerateArray()
            .ToDictionary(q => q.GetProperty("model").GetString()!, q => (For: q.GetProperty("waitingFor").GetString(), Eta: q.GetProperty("etaMs").GetDouble()));
        foreach (var response in await Task.WhenAll(requests)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        Assert.True(queues.Count == 3, string.Join("; ", queues.Select(q => $"{q.Key} {q.Value}")));
        Assert.Equal("swap", queues[Gemma].For);
        Assert.All([queues[Model].For, queues[Embed].For], f => Assert.Contains(f, new[] { "room", "swap" }));
        // Qwen waits for Gemma's load and its own (about 1 s each); the embedding model for those and its own.
        Assert.True(queues[Model].Eta > queues[Gemma].Eta + 600, string.Join("; ", queues.Select(q => $"{q.Key} {q.Value}")));
        Assert.True(queues[Embed].Eta > queues[Model].Eta + 600, $"{queues[Embed].Eta} after {queues[Model].Eta}");
    }

    [Fact(Timeout = 30000)]
    public async Task ModelList_GivesEachModelAStatus_LoadingThenLoaded()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) });

        static async Task<Dictionary<string, string>> StatusesAsync(HttpClient client) =>
            (await (await client.GetAsync("/v1/models")).ReadJson()).GetProperty("data").EnumerateArray()
                .ToDictionary(m => m.GetProperty("id").GetString()!, m => m.GetProperty("status").GetProperty("value").GetString()!);
        var before = await StatusesAsync(env.Client);
        var chat = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        await Eventually.Until(() => env.Proxy.Scheduler.LoadStates().ContainsKey(Model));
        var during = await StatusesAsync(env.Proxy.Client());
        (await chat).Dispose();
        var afterwards = await StatusesAsync(env.Client);

        Assert.All(before.Values, v => Assert.Equal("unloaded", v));
        Assert.Equal("loading", during[Model]);
        Assert.Equal("loaded", afterwards[Model]);
        Assert.Equal("unloaded", afterwards["google/gemma-3-1b"]);
    }

    [Fact(Timeout = 30000)]
    public async Task Events_PushesStatusAsTheLoadProgresses_WithoutBeingAsked()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2) });
        using var events = env.Proxy.Client();
        using var stream = await events.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/events"), HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());

        var chat = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        var progress = new List<double>();
        var sawIdle = false;
        while (!sawIdle && await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            var instance = JsonDocument.Parse(line[6..]).RootElement.GetProperty("hosts")[0].GetProperty("instances").EnumerateArray().FirstOrDefault(i => i.GetProperty("model").GetString() == Model);
            if (instance.ValueKind != JsonValueKind.Object) continue;
            if (instance.GetProperty("state").GetString() == "idle") sawIdle = true;
            else if (instance.TryGetProperty("loadProgress", out var p) && p.ValueKind == JsonValueKind.Number) progress.Add(p.GetDouble());
        }
        (await chat).Dispose();

        Assert.Equal("text/event-stream", stream.Content.Headers.ContentType?.MediaType);
        Assert.True(sawIdle);
        Assert.True(progress.Count >= 4, "one event per change, several a second: " + string.Join(", ", progress));
        Assert.True(progress[^1] > progress[0]);
    }

    [GeneratedRegex(@"^: loading qwen/qwen3-8b( (?<pct>\d+)%)?( eta (?<eta>\d+)s)? queue (?<queue>\d+)$")]
    private static partial Regex CommentLine();
}
