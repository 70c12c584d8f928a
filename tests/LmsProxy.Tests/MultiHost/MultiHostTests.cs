using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.MultiHost;

/// <summary>Several LM Studio hosts behind one base URL: placement by model, one load per burst, affinity, failover, per-host tokens.</summary>
public sealed class MultiHostTests
{
    [Fact(Timeout = 60000)]
    public async Task BurstsForTwoColdModels_EachHostWithRoomForOne_OneLoadOfEach_OnDifferentHosts_All200()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, _ => new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1) },
            new Dictionary<string, string?> { ["LmsProxy:Capacity:MaxLoadedModels"] = "1" });

        var requests = Enumerable.Range(0, 40).Select(i => env.Client.PostAsync("/v1/chat/completions", Json.Chat(i % 2 == 0 ? "qwen/qwen3-8b" : "google/gemma-3-1b"))).ToList();
        var responses = await Task.WhenAll(requests);

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(1, env.Hosts.Sum(h => h.State.LoadCount("qwen/qwen3-8b")));
        Assert.Equal(1, env.Hosts.Sum(h => h.State.LoadCount("google/gemma-3-1b")));
        var qwenHost = env.Hosts.Single(h => h.State.LoadCount("qwen/qwen3-8b") == 1);
        var gemmaHost = env.Hosts.Single(h => h.State.LoadCount("google/gemma-3-1b") == 1);
        Assert.NotSame(qwenHost, gemmaHost);
        Assert.Equal(0, env.Hosts.Sum(h => h.State.UnloadRequests)); // room on another host beats unloading
        Assert.All(responses.Where((_, i) => i % 2 == 0), r => Assert.Equal(ClusterEnvironment.NameOf(env.Hosts.ToList().IndexOf(qwenHost)), r.Headers.GetValues("X-LmsProxy-Host").Single()));
        foreach (var r in responses) r.Dispose();
    }

    [Fact(Timeout = 60000)]
    public async Task ASixTurnResponsesChain_StaysWithTheHostThatHoldsItsState_EvenWhenTheModelIsWarmElsewhere()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, _ => new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200) });
        foreach (var host in env.Hosts) await host.State.LoadAsync(host.State.Find("qwen/qwen3-8b")!, null, null);
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);

        string? previous = null;
        string? home = null;
        for (var turn = 1; turn <= 6; turn++)
        {
            var stream = turn % 2 == 0;
            var body = JsonSerializer.Serialize(new Dictionary<string, object?> { ["model"] = "qwen/qwen3-8b", ["input"] = $"turn {turn}", ["previous_response_id"] = previous, ["stream"] = stream });
            using var response = await env.Client.PostAsync("/v1/responses", Json.Body(body));
            var text = await response.Content.ReadAsStringAsync();

            Assert.True(response.StatusCode == HttpStatusCode.OK, $"turn {turn}: {(int)response.StatusCode} {text}");
            var host = response.Headers.GetValues("X-LmsProxy-Host").Single();
            home ??= host;
            Assert.Equal(home, host);
            previous = stream ? ResponseIdOfStream(text) : JsonDocument.Parse(text).RootElement.GetProperty("id").GetString();

            // Make the other host the obvious choice: the conversation's host loses the model between turns.
            if (turn % 2 == 1) env[home!].State.Evict("qwen/qwen3-8b");
        }
        Assert.True(env[home!].State.LoadCount("qwen/qwen3-8b") >= 3, "the conversation's host was made to load the model again");
    }

    [Fact(Timeout = 60000)]
    public async Task AConversationWhoseHostIsDown_Gets503SayingWhere_NeverAnAnswerFromElsewhere()
    {
        await using var env = await ClusterEnvironment.StartAsync(2);
        foreach (var host in env.Hosts) await host.State.LoadAsync(host.State.Find("qwen/qwen3-8b")!, null, null);
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);
        using var first = await env.Client.PostAsync("/v1/responses", Json.Body("""{"model":"qwen/qwen3-8b","input":"hi"}"""));
        var id = (await first.ReadJson()).GetProperty("id").GetString();
        var home = first.Headers.GetValues("X-LmsProxy-Host").Single();

        await env[home].KillAsync();
        using var next = await env.Client.PostAsync("/v1/responses", Json.Body($$"""{"model":"qwen/qwen3-8b","input":"again","previous_response_id":"{{id}}"}"""));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, next.StatusCode);
        Assert.Equal("conversation_host_unavailable", await next.ErrorCode());
        Assert.Contains($"'{home}'", await next.ErrorMessage());
        using var fresh = await env.Client.PostAsync("/v1/responses", Json.Body("""{"model":"qwen/qwen3-8b","input":"new chat"}"""));
        Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);
    }

    [Fact(Timeout = 60000)]
    public async Task AHostKilledMidRun_WithinTwoSeconds_EveryNewRequestIsAnsweredByTheOthers()
    {
        await using var env = await ClusterEnvironment.StartAsync(3, _ => new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(300) });
        foreach (var host in env.Hosts) await host.State.LoadAsync(host.State.Find("qwen/qwen3-8b")!, null, null);
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);
        var outcomes = new List<(DateTime Started, HttpStatusCode Status)>();
        var killedAt = DateTime.MaxValue;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(6));

        var clients = Enumerable.Range(0, 6).Select(_ => Task.Run(async () =>
        {
            using var client = env.Proxy.Client(TimeSpan.FromSeconds(20));
            while (!stop.IsCancellationRequested)
            {
                var started = DateTime.UtcNow;
                HttpStatusCode status;
                try
                {
                    using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: Random.Shared.Next(2) == 0));
                    await response.Content.ReadAsStringAsync();
                    status = response.StatusCode;
                }
                catch (HttpRequestException)
                {
                    status = 0; // a stream under way from the host that died ends with an error, as it should
                }
                lock (outcomes) outcomes.Add((started, status));
            }
        })).ToList();
        await Task.Delay(1500);
        killedAt = DateTime.UtcNow;
        await env.Hosts[0].KillAsync();
        await Task.WhenAll(clients); // none hangs

        var after = outcomes.Where(o => o.Started > killedAt + TimeSpan.FromSeconds(2)).ToList();
        Assert.True(after.Count > 20, $"{after.Count} requests after the kill");
        Assert.All(after, o => Assert.Equal(HttpStatusCode.OK, o.Status));
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        Assert.False(status.GetProperty("hosts").EnumerateArray().Single(h => h.GetProperty("name").GetString() == "gpu-a").GetProperty("healthy").GetBoolean());
        using var ready = await env.Client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode); // two of three hosts are up
    }

    [Fact(Timeout = 60000)]
    public async Task EachHostsApiKey_ReachesThatHostOnly()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Hosts:gpu-a:ApiKey"] = "sk-lm-host-a",
            ["LmsProxy:Hosts:gpu-a:Models:0"] = "qwen/*",
            ["LmsProxy:Hosts:gpu-b:ApiKey"] = "sk-lm-host-b",
            ["LmsProxy:Hosts:gpu-b:Models:0"] = "google/gemma-3-1b",
        });

        using var qwen = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        using var gemma = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));

        Assert.Equal(HttpStatusCode.OK, qwen.StatusCode);
        Assert.Equal(HttpStatusCode.OK, gemma.StatusCode);
        Assert.Equal("gpu-a", qwen.Headers.GetValues("X-LmsProxy-Host").Single());
        Assert.Equal("gpu-b", gemma.Headers.GetValues("X-LmsProxy-Host").Single());
        Assert.Equal("Bearer sk-lm-host-a", env["gpu-a"].State.LastAuthorization);
        Assert.Equal("Bearer sk-lm-host-b", env["gpu-b"].State.LastAuthorization);
        Assert.Equal(0, env["gpu-b"].State.LoadCount("qwen/qwen3-8b"));   // the allow-lists hold
        Assert.Equal(0, env["gpu-a"].State.LoadCount("google/gemma-3-1b"));
    }

    [Fact(Timeout = 60000)]
    public async Task EverySaturatedInstance_SpillsOverToAHostWithRoom()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, _ => new SimulatorOptions { ResponseDelay = TimeSpan.FromMilliseconds(700), LoadTime = TimeSpan.FromMilliseconds(200) },
            new Dictionary<string, string?> { ["LmsProxy:Capacity:SpillAt"] = "2" });
        using var first = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        var home = first.Headers.GetValues("X-LmsProxy-Host").Single();

        var burst = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))));
        await Eventually.Until(() => env.Hosts.All(h => h.State.LoadCount("qwen/qwen3-8b") == 1));
        var spread = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))));

        Assert.All(burst.Concat(spread), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(2, spread.Select(r => r.Headers.GetValues("X-LmsProxy-Host").Single()).Distinct().Count());
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        Assert.Contains(status.GetProperty("events").EnumerateArray(), e => e.GetProperty("kind").GetString() == "spill");
        Assert.NotEqual(home, status.GetProperty("events").EnumerateArray().First(e => e.GetProperty("kind").GetString() == "spill").GetProperty("host").GetString());
    }

    [Fact(Timeout = 60000)]
    public async Task ModelsList_ShowsTheUnionOfTheHosts_EachModelOnce()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, i => new SimulatorOptions
        {
            Models = i == 0
                ? [new("qwen/qwen3-8b", "llm", "q.gguf"), new("google/gemma-3-1b", "llm", "g.gguf")]
                : [new("google/gemma-3-1b", "llm", "g.gguf"), new("openai/gpt-oss-20b", "llm", "o.gguf")],
        });

        var ids = (await (await env.Client.GetAsync("/v1/models")).ReadJson()).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        using var onlyOnB = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("openai/gpt-oss-20b"));

        Assert.Equal(["google/gemma-3-1b", "openai/gpt-oss-20b", "qwen/qwen3-8b"], ids.Order());
        Assert.Equal(HttpStatusCode.OK, onlyOnB.StatusCode);
        Assert.Equal("gpu-b", onlyOnB.Headers.GetValues("X-LmsProxy-Host").Single());
    }

    private static string ResponseIdOfStream(string sse)
    {
        var created = sse.Split('\n').First(l => l.StartsWith("data: ", StringComparison.Ordinal) && l.Contains("response.created", StringComparison.Ordinal));
        return JsonDocument.Parse(created["data: ".Length..]).RootElement.GetProperty("response").GetProperty("id").GetString()!;
    }
}
