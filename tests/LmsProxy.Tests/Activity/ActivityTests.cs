using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Activity;

/// <summary>The activity record as an operator reads it from GET /activity: where the time went, the tokens, the outcome.</summary>
public sealed class ActivityTests
{
    private const string Qwen = "qwen/qwen3-8b";

    internal static async Task<JsonElement[]> ActivityAsync(HttpClient client, string query = "")
    {
        var list = await (await client.GetAsync("/activity" + query)).ReadJson();
        return [.. list.GetProperty("requests").EnumerateArray()];
    }

    /// <summary>The finished record of the newest request to <paramref name="endpoint"/>.</summary>
    internal static async Task<JsonElement> LastDoneAsync(HttpClient client, string endpoint)
    {
        JsonElement found = default;
        await Eventually.Until(async () =>
        {
            // The newest request's record, once it is done (not an older done one while the newest is still finishing).
            found = (await ActivityAsync(client)).FirstOrDefault(r => r.GetProperty("endpoint").GetString() == endpoint);
            return found.ValueKind == JsonValueKind.Object && found.GetProperty("state").GetString() == "done";
        });
        return found;
    }

    private static StringContent Stream(string model, bool includeUsage) => Json.Body(JsonSerializer.Serialize(includeUsage
        ? new { model, stream = true, messages = new[] { new { role = "user", content = "hi" } }, stream_options = new { include_usage = true } }
        : (object)new { model, stream = true, messages = new[] { new { role = "user", content = "hi" } } }));

    [Fact(Timeout = 30000)]
    public async Task AColdRequest_ItsLoadMsIsTheLoadTime_AndTheRecordSaysWhoAskedWhatAndWhatServedIt()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(700) }, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });
        await Eventually.Until(() => env.Proxy.Refreshed);

        // Up to three cold requests while the record's load time is off the simulator's: a test running beside this one
        // can stall the proxy's threads for half a second (1,262 ms once in CI), and the record then rightly says so.
        HttpResponseMessage response;
        JsonElement record;
        for (var attempt = 1; ; attempt++)
        {
            response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
            record = await LastDoneAsync(env.Client, "/v1/chat/completions");
            if (attempt == 3 || record.GetProperty("loadMs").GetInt64() is >= 680 and <= 1200) break;
            response.Dispose();
            await env.UnloadAsync(Qwen);
        }
        using var _ = response;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.InRange(record.GetProperty("loadMs").GetInt64(), 680, 1200); // the simulator's 700 ms, timers firing up to a few ms early
        Assert.True(record.GetProperty("heldMs").GetInt64() >= record.GetProperty("loadMs").GetInt64(), "the load is part of the hold");
        Assert.True(record.GetProperty("durationMs").GetInt64() >= record.GetProperty("heldMs").GetInt64());
        Assert.Equal("POST", record.GetProperty("method").GetString());
        Assert.Equal(Qwen, record.GetProperty("model").GetString());
        Assert.Equal(Qwen, record.GetProperty("resolvedModel").GetString());
        Assert.Equal("default", record.GetProperty("host").GetString());
        Assert.Equal("127.0.0.1", record.GetProperty("client").GetString());
        Assert.Equal(200, record.GetProperty("status").GetInt32());
        Assert.Equal(JsonValueKind.Null, record.GetProperty("error").ValueKind);
        Assert.False(record.GetProperty("cancelled").GetBoolean());
        Assert.Equal(5, record.GetProperty("promptTokens").GetInt64());
        Assert.Equal(5, record.GetProperty("completionTokens").GetInt64());
        Assert.False(record.GetProperty("tokensEstimated").GetBoolean());
        Assert.True(record.GetProperty("bytesIn").GetInt64() > 20);
        Assert.Equal(response.Content.Headers.ContentLength ?? (await response.Content.ReadAsByteArrayAsync()).Length, record.GetProperty("bytesOut").GetInt64());
        Assert.True(DateTimeOffset.UtcNow - record.GetProperty("startedAt").GetDateTimeOffset() < TimeSpan.FromMinutes(1));
        Assert.EndsWith("Z", record.GetProperty("startedAt").GetString(), StringComparison.Ordinal);

        // Warm now: no load in the second request's record.
        using var warm = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        var second = (await ActivityAsync(env.Client, "?limit=1"))[0];
        Assert.True(second.GetProperty("id").GetInt64() > record.GetProperty("id").GetInt64());
        Assert.Equal(0, second.GetProperty("loadMs").GetInt64());
    }

    [Fact(Timeout = 30000)]
    public async Task AStream_ItsTtftIsTheFirstTokenDelay_TokensFromUsageWhenSent_CountedOtherwise()
    {
        var delay = TimeSpan.FromMilliseconds(300);
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { FirstTokenDelay = delay, TokenDelay = TimeSpan.FromMilliseconds(20), StreamEvents = 6 });
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { } // loaded and warm
        // The stream path warm too (the first stream through a fresh proxy is compiled on the way: 852 ms once in CI).
        using (var first = await env.Client.PostAsync("/v1/chat/completions", Stream(Qwen, includeUsage: true))) await first.Content.ReadAsStringAsync();

        // A stream and its record; up to three tries while the record's time to first token is off the delay: on this
        // 2-core machine a test running beside it can stall the proxy's threads for a second (1,208 ms once in CI), and
        // the record then rightly says so. A wrong measurement would be off in every try.
        async Task<(string Text, JsonElement Record)> StreamAsync(bool includeUsage)
        {
            for (var attempt = 1; ; attempt++)
            {
                using var response = await env.Client.PostAsync("/v1/chat/completions", Stream(Qwen, includeUsage));
                var body = await response.Content.ReadAsStringAsync();
                var done = await LastDoneAsync(env.Client, "/v1/chat/completions");
                if (attempt == 3 || done.GetProperty("ttftMs").GetInt64() is >= 280 and <= 320) return (body, done);
            }
        }
        var (text, usageRecord) = await StreamAsync(includeUsage: true);
        var (_, counted) = await StreamAsync(includeUsage: false);

        Assert.Contains("\"usage\"", text);
        Assert.InRange(usageRecord.GetProperty("ttftMs").GetInt64(), 280, 320); // within 20 ms of the delay (timers may fire a little early)
        Assert.Equal(5, usageRecord.GetProperty("promptTokens").GetInt64());
        Assert.Equal(6, usageRecord.GetProperty("completionTokens").GetInt64());
        Assert.False(usageRecord.GetProperty("tokensEstimated").GetBoolean());
        // Six tokens over the five 20 ms pauses after the first: about 60 per second.
        Assert.InRange(usageRecord.GetProperty("tokensPerSecond").GetDouble(), 20, 80);
        Assert.True(usageRecord.GetProperty("durationMs").GetInt64() >= 300 + 5 * 20);

        Assert.Equal("done", counted.GetProperty("state").GetString());
        Assert.InRange(counted.GetProperty("ttftMs").GetInt64(), 280, 320);
        Assert.Equal(6, counted.GetProperty("completionTokens").GetInt64());
        Assert.True(counted.GetProperty("tokensEstimated").GetBoolean());
        Assert.Equal(JsonValueKind.Null, counted.GetProperty("promptTokens").ValueKind);
    }

    [Theory(Timeout = 30000)]
    [InlineData("/v1/messages", """{"model":"qwen/qwen3-8b","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}""", 5L)]
    [InlineData("/v1/responses", """{"model":"qwen/qwen3-8b","stream":true,"input":"hi"}""", 5L)]
    [InlineData("/api/v1/chat", """{"model":"qwen/qwen3-8b","stream":true,"input":"hi"}""", 5L)]
    [InlineData("/api/v0/chat/completions", """{"model":"qwen/qwen3-8b","messages":[{"role":"user","content":"hi"}]}""", 5L)]
    public async Task EachProtocol_ItsReportedTokensAreTaken(string path, string body, long completion)
    {
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync(path, Json.Body(body));
        await response.Content.ReadAsStringAsync();
        var record = await LastDoneAsync(env.Client, path);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(completion, record.GetProperty("completionTokens").GetInt64());
        Assert.True(record.GetProperty("promptTokens").GetInt64() > 0);
        Assert.False(record.GetProperty("tokensEstimated").GetBoolean());
        Assert.True(record.GetProperty("ttftMs").GetInt64() >= 0);
    }

    [Fact(Timeout = 30000)]
    public async Task RefusedFailedAndCancelledRequests_HaveRecordsToo()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { TokenDelay = TimeSpan.FromMilliseconds(200), StreamEvents = 50 });

        using var unknown = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("nobody/has-this"));
        using var badJson = await env.Client.PostAsync("/v1/chat/completions", Json.Body("{not json"));
        using (var client = env.Proxy.Client())
        {
            using var stream = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Stream(Qwen, false) }, HttpCompletionOption.ResponseHeadersRead);
            var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
            await reader.ReadLineAsync(); // the first event arrived: now the client leaves
        }
        await Eventually.Until(async () => (await ActivityAsync(env.Client)).Count(r => r.GetProperty("state").GetString() == "done") >= 3);
        var records = await ActivityAsync(env.Client);

        var notFound = records.Single(r => r.GetProperty("model").GetString() == "nobody/has-this");
        Assert.Equal(404, notFound.GetProperty("status").GetInt32());
        Assert.Equal("not_found", notFound.GetProperty("error").GetString());
        var bad = records.Single(r => r.GetProperty("status").GetInt32() == 400);
        Assert.Equal("bad_request", bad.GetProperty("error").GetString());
        Assert.Equal(JsonValueKind.Null, bad.GetProperty("model").ValueKind);
        var left = records.Single(r => r.GetProperty("model").GetString() == Qwen);
        Assert.True(left.GetProperty("cancelled").GetBoolean());
        Assert.Equal("done", left.GetProperty("state").GetString());
        Assert.True(left.GetProperty("completionTokens").GetInt64() < 50);

        // Filters: by status, by model.
        Assert.Single(await ActivityAsync(env.Client, "?status=404"));
        Assert.All(await ActivityAsync(env.Client, "?model=" + Uri.EscapeDataString(Qwen)), r => Assert.Equal(Qwen, r.GetProperty("model").GetString()));
        Assert.Equal(HttpStatusCode.BadRequest, (await env.Client.GetAsync("/activity?limit=0")).StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task AnOperatorsCancel_EndsTheStreamWithAnError_AndTheUpstreamRequestIsAborted()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { TokenDelay = TimeSpan.FromMilliseconds(100), StreamEvents = 100 });
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { }

        using var client = env.Proxy.Client();
        using var stream = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Stream(Qwen, false) }, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync());
        var live = (await ActivityAsync(env.Client)).First(r => r.GetProperty("state").GetString() == "streaming");
        var id = live.GetProperty("id").GetInt64();

        using var withoutHeader = await env.Client.PostAsync($"/activity/{id}/cancel", null);
        using var cancel = new HttpRequestMessage(HttpMethod.Post, $"/activity/{id}/cancel");
        cancel.Headers.Add("X-LmsProxy-Action", "1");
        using var cancelled = await env.Client.SendAsync(cancel);
        var received = new System.Text.StringBuilder();
        try
        {
            while (await reader.ReadLineAsync() is { } line) received.Append(line).Append('\n');
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            // The proxy aborts the connection after the error event; what arrived before counts.
        }

        var rest = received.ToString();
        Assert.Equal(HttpStatusCode.BadRequest, withoutHeader.StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, cancelled.StatusCode);
        Assert.True(rest.Contains("\"code\":\"cancelled_by_operator\"", StringComparison.Ordinal), rest);
        Assert.DoesNotContain("token99", rest);
        await Eventually.Until(() => env.Simulator.State.AbortedRequests == 1);
        JsonElement record = default;
        await Eventually.Until(async () => (record = await (await env.Client.GetAsync($"/activity/{id}")).ReadJson()).GetProperty("state").GetString() == "done");
        Assert.True(record.GetProperty("cancelled").GetBoolean());
        Assert.Equal(HttpStatusCode.NotFound, (await env.Client.SendAsync(Action($"/activity/{id}/cancel"))).StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task AnOperatorsCancel_OfAHeldRequest_AnswersItWithAnErrorInItsShape()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(5) }, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });
        await Eventually.Until(() => env.Proxy.Refreshed);

        var held = env.Client.PostAsync("/v1/messages", Json.Body("""{"model":"qwen/qwen3-8b","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"""));
        JsonElement live = default;
        await Eventually.Until(async () =>
        {
            live = (await ActivityAsync(env.Client)).FirstOrDefault(r => r.GetProperty("state").GetString() == "loading");
            return live.ValueKind == JsonValueKind.Object;
        });
        using var cancelled = await env.Client.SendAsync(Action($"/activity/{live.GetProperty("id").GetInt64()}/cancel"));
        using var response = await held;
        var body = await response.ReadJson();

        Assert.Equal(HttpStatusCode.Gone, response.StatusCode);
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Contains("operator", body.GetProperty("error").GetProperty("message").GetString());
        var record = await LastDoneAsync(env.Client, "/v1/messages");
        Assert.True(record.GetProperty("cancelled").GetBoolean());
        Assert.Equal(410, record.GetProperty("status").GetInt32());
    }

    [Fact(Timeout = 30000)]
    public async Task TheChangeStream_SendsARequestAsItBeginsAndEnds_AndUsageAddsItUp()
    {
        await using var env = await GateEnvironment.StartAsync();
        using var client = env.Proxy.Client();
        using var events = await client.GetAsync("/activity/stream", HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await events.Content.ReadAsStreamAsync());
        Assert.Equal(": activity", await reader.ReadLineAsync());

        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { }
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { }
        var seen = new List<string>();
        while (seen.Count(l => l == "event: done") < 2) seen.Add((await reader.ReadLineAsync())!);
        var usage = await (await env.Client.GetAsync("/usage?by=model&days=1")).ReadJson();

        Assert.Equal("text/event-stream", events.Content.Headers.ContentType?.MediaType);
        Assert.Contains("event: update", seen);
        Assert.Contains(seen, l => l.StartsWith("data: {", StringComparison.Ordinal) && l.Contains("\"state\":\"done\""));
        var row = usage.GetProperty("usage").EnumerateArray().Single(r => r.GetProperty("name").GetString() == Qwen);
        Assert.Equal(DateTime.UtcNow.ToString("yyyy-MM-dd"), row.GetProperty("day").GetString());
        Assert.Equal(2, row.GetProperty("requests").GetInt64());
        Assert.Equal(10, row.GetProperty("promptTokens").GetInt64());
        Assert.Equal(10, row.GetProperty("completionTokens").GetInt64());
        Assert.True(row.GetProperty("gpuSeconds").GetDouble() > 0);
        var byKey = await (await env.Client.GetAsync("/usage?by=key")).ReadJson();
        Assert.Equal(2, byKey.GetProperty("usage")[0].GetProperty("requests").GetInt64());
        Assert.Equal(HttpStatusCode.BadRequest, (await env.Client.GetAsync("/usage?by=colour")).StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task WithCaptureFailed_AFailedRequestsBodiesAreKept_WithoutItsKey_AndASuccessfulOnesAreNot()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Activity:Capture"] = "failed",
            ["LmsProxy:ApiKeys:0"] = "sk-secret-in-header",
        });
        env.Client.DefaultRequestHeaders.Authorization = new("Bearer", "sk-secret-in-header");
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat("nobody/has-this"))) { }
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { }
        var records = await ActivityAsync(env.Client);
        var failed = await (await env.Client.GetAsync($"/activity/{records.Single(r => r.GetProperty("status").GetInt32() == 404).GetProperty("id").GetInt64()}")).ReadJson();
        var ok = await (await env.Client.GetAsync($"/activity/{records.Single(r => r.GetProperty("status").GetInt32() == 200).GetProperty("id").GetInt64()}")).ReadJson();

        Assert.Contains("nobody/has-this", failed.GetProperty("requestBody").GetString());
        Assert.Contains("model_not_found", failed.GetProperty("responseBody").GetString());
        Assert.DoesNotContain("sk-secret", failed.GetRawText());
        Assert.False(ok.TryGetProperty("requestBody", out _));
    }

    private static HttpRequestMessage Action(string path)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path);
        request.Headers.Add("X-LmsProxy-Action", "1");
        return request;
    }
}
