using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Capacity;

/// <summary>The proxy owns LM Studio's memory: it unloads idle models to make room, never a busy one, and says when nothing can.</summary>
public sealed class CapacityTests
{
    // Three 4 GB models on an LM Studio whose guardrail allows 9 GB: any two fit, three do not.
    private static SimulatorOptions TwoOfThreeFit(TimeSpan? loadTime = null, TimeSpan? responseDelay = null) => new()
    {
        LoadTime = loadTime ?? TimeSpan.FromMilliseconds(300),
        ResponseDelay = responseDelay ?? TimeSpan.Zero,
        MemoryBudgetBytes = 9_000_000_000,
        Models =
        [
            new("lab/alpha-4b", "llm", "lab/alpha-4b.gguf", 4_000_000_000),
            new("lab/beta-4b", "llm", "lab/beta-4b.gguf", 4_000_000_000),
            new("lab/gamma-4b", "llm", "lab/gamma-4b.gguf", 4_000_000_000),
        ],
    };

    private static readonly string[] Three = ["lab/alpha-4b", "lab/beta-4b", "lab/gamma-4b"];

    [Fact(Timeout = 90000)]
    public async Task ThreeModelsWhereTwoFit_SixClientsCyclingFor20s_AllAnswered_NoBusyModelUnloaded_NoDuplicates()
    {
        await using var env = await GateEnvironment.StartAsync(TwoOfThreeFit(responseDelay: TimeSpan.FromMilliseconds(40)), new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:Capacity:MemoryBudgetBytes"] = "10000000000",
            ["LmsProxy:Capacity:MaxSwapWait"] = "00:00:01",
        });
        var outcomes = new List<string>();
        var peakInstances = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        var clients = Enumerable.Range(0, 6).Select(client => Task.Run(async () =>
        {
            for (var n = client; !stop.IsCancellationRequested; n++)
            {
                var model = Three[n % 3];
                var stream = n % 2 == 0;
                using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(model, stream));
                var body = await response.Content.ReadAsStringAsync();
                var complete = response.StatusCode == HttpStatusCode.OK && (!stream || body.EndsWith("data: [DONE]\n\n", StringComparison.Ordinal));
                lock (outcomes) outcomes.Add(complete ? "200" : $"{(int)response.StatusCode} {body[..Math.Min(200, body.Length)]}");
                Interlocked.Exchange(ref peakInstances, Math.Max(peakInstances, env.Simulator.State.Instances().Count));
            }
        })).ToList();
        await Task.WhenAll(clients);

        Assert.True(outcomes.Count > 60, $"only {outcomes.Count} requests in 20 s");
        Assert.All(outcomes, o => Assert.Equal("200", o));
        Assert.Equal(0, env.Simulator.State.CutOffRequests);   // no busy model was unloaded under its requests
        Assert.Equal(0, env.Simulator.State.RefusedLoads);     // the proxy knew the budget and made room first
        Assert.True(peakInstances <= 2, $"{peakInstances} models loaded at once");
        Assert.DoesNotContain(env.Simulator.State.Instances(), i => i.Id.Contains(':'));
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        Assert.True(status.GetProperty("swaps").GetInt32() > 0);
        Assert.True(status.GetProperty("unloads").GetProperty("capacity").GetInt32() > 0);
    }

    [Fact(Timeout = 60000)]
    public async Task MaxLoadedModels1_ALongStreamOnA_ThenARequestForB_TheStreamCompletes_AndBIsAnsweredAfterIt()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200), TokenDelay = TimeSpan.FromMilliseconds(250), StreamEvents = 10 },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:Capacity:MaxLoadedModels"] = "1", ["LmsProxy:Capacity:MaxSwapWait"] = "00:00:00" });
        using var warm = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        using var streamResponse = await env.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("qwen/qwen3-8b", stream: true) },
            HttpCompletionOption.ResponseHeadersRead);
        var streamDone = Task.Run(async () =>
        {
            var text = await streamResponse.Content.ReadAsStringAsync();
            return (Text: text, At: DateTime.UtcNow);
        });
        await Task.Delay(300);
        using var b = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));
        var bAt = DateTime.UtcNow;
        var stream = await streamDone;

        Assert.Equal(HttpStatusCode.OK, b.StatusCode);
        Assert.EndsWith("data: [DONE]\n\n", stream.Text, StringComparison.Ordinal);
        Assert.True(bAt > stream.At, "B was answered only after A's stream ended");
        Assert.Equal(0, env.Simulator.State.CutOffRequests);
        Assert.Equal(["google/gemma-3-1b"], env.Simulator.State.Instances().Select(i => i.Id));
    }

    [Fact(Timeout = 60000)]
    public async Task WithNoLimitsConfigured_LmStudiosRefusal_DrivesEviction_OfTheLeastRecentlyUsedIdleModel()
    {
        await using var env = await GateEnvironment.StartAsync(TwoOfThreeFit(), new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });

        foreach (var model in Three)
        {
            using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(model));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True(env.Simulator.State.RefusedLoads >= 1, "LM Studio refused the third load");
        Assert.Equal(["lab/beta-4b", "lab/gamma-4b"], env.Simulator.State.Instances().Select(i => i.Id).Order());
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        Assert.Equal(1, status.GetProperty("unloads").GetProperty("refusal").GetInt32());
        var host = status.GetProperty("hosts")[0].GetProperty("capacity");
        Assert.True(host.GetProperty("learnedCeilingBytes").GetInt64() > 0);

        // What the refusal taught is used next time: room is made first, LM Studio refuses nothing more.
        var refused = env.Simulator.State.RefusedLoads;
        using var again = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("lab/alpha-4b"));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(refused, env.Simulator.State.RefusedLoads);
    }

    [Fact(Timeout = 30000)]
    public async Task AModelThatCanNeverFit_Gets503SayingSo_Fast()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { MemoryBudgetBytes = 3_000_000_000 }, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("model_too_large", await response.ErrorCode());
        Assert.Contains("even with nothing else loaded", await response.ErrorMessage());
        Assert.Contains("insufficient system resources", await response.ErrorMessage());
        using var small = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));
        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task ConfiguredBudget_TooSmallForTheModel_Gets503WithoutAskingLmStudio()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:Capacity:MemoryBudgetBytes"] = "2000000000" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("model_too_large", await response.ErrorCode());
        Assert.Contains("Capacity:MemoryBudgetBytes", await response.ErrorMessage());
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Fact(Timeout = 30000)]
    public async Task IdleModel_IsUnloaded_AfterIdleUnloadAfter_ButAPinnedOneStays()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:Capacity:IdleUnloadAfter"] = "00:00:01",
            ["LmsProxy:Preload:0"] = "google/gemma-3-1b",
        });
        await Eventually.Until(() => env.Proxy.IsLoaded("google/gemma-3-1b"));
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        await Eventually.Until(() => env.Simulator.State.Instances().All(i => i.Id != "qwen/qwen3-8b"), TimeSpan.FromSeconds(5));
        await Task.Delay(1500);

        Assert.Equal(["google/gemma-3-1b"], env.Simulator.State.Instances().Select(i => i.Id));
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        Assert.Equal(1, status.GetProperty("unloads").GetProperty("idle").GetInt32());
        Assert.True(Model(status, "google/gemma-3-1b").GetProperty("pinned").GetBoolean());
    }

    [Fact(Timeout = 30000)]
    public async Task BusyModel_IsNotUnloadedWhenIdle_TimeComes_UntilItsRequestsEnd()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { TokenDelay = TimeSpan.FromMilliseconds(300), StreamEvents = 8 },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:Capacity:IdleUnloadAfter"] = "00:00:01" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: true));
        var body = await response.Content.ReadAsStringAsync();

        Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
        Assert.Equal(0, env.Simulator.State.CutOffRequests);
        await Eventually.Until(() => env.Simulator.State.Instances().Count == 0, TimeSpan.FromSeconds(5));
    }

    [Theory(Timeout = 30000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ModelLoadedOutsideTheProxy_CountsAgainstTheLimit_AndIsUnloadedOnlyWithEvictForeign(bool evictForeign)
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:Capacity:MaxLoadedModels"] = "1",
            ["LmsProxy:Capacity:EvictForeign"] = evictForeign ? "true" : "false",
        });
        await env.Simulator.State.LoadAsync(env.Simulator.State.Find("google/gemma-3-1b")!, null, null); // a user loaded it in the app
        // Twice: a refresh joins a read already under way (single flight), which may have started before the load.
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        if (evictForeign)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(["qwen/qwen3-8b"], env.Simulator.State.Instances().Select(i => i.Id));
        }
        else
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Contains("loaded outside the proxy google/gemma-3-1b", await response.ErrorMessage());
            Assert.Equal(["google/gemma-3-1b"], env.Simulator.State.Instances().Select(i => i.Id));
        }
    }

    [Fact(Timeout = 30000)]
    public async Task Operator_PinsLoadsAndUnloads_ThroughTheStatusActions()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:Capacity:IdleUnloadAfter"] = "00:00:01",
        });
        await Eventually.Until(() => env.Proxy.Refreshed);

        using var withoutHeader = await env.Client.PostAsync("/models/google%2Fgemma-3-1b/load", null);
        Assert.Equal(HttpStatusCode.BadRequest, withoutHeader.StatusCode);
        Assert.Equal(0, env.Simulator.State.TotalLoads);

        using var pin = await Action("google%2Fgemma-3-1b", "pin");
        using var load = await Action("google%2Fgemma-3-1b", "load");
        Assert.Equal(HttpStatusCode.Accepted, load.StatusCode);
        await Eventually.Until(() => env.Proxy.IsLoaded("google/gemma-3-1b"));
        await Task.Delay(1500); // past IdleUnloadAfter: pinned, so it stays
        Assert.Equal(["google/gemma-3-1b"], env.Simulator.State.Instances().Select(i => i.Id));

        using var unload = await Action("google%2Fgemma-3-1b", "unload");
        Assert.Equal(HttpStatusCode.Accepted, unload.StatusCode);
        await Eventually.Until(() => env.Simulator.State.Instances().Count == 0);
        // LM Studio drops the instance before it answers the unload: the proxy counts it a moment later.
        await Eventually.Until(async () => (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("unloads").TryGetProperty("operator", out _));
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        Assert.Equal(1, status.GetProperty("unloads").GetProperty("operator").GetInt32());
        Assert.False(Model(status, "google/gemma-3-1b").GetProperty("pinned").GetBoolean());

        Task<HttpResponseMessage> Action(string key, string action)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, $"/models/{key}/{action}");
            request.Headers.Add("X-LmsProxy-Action", "1");
            return env.Client.SendAsync(request);
        }
    }

    private static JsonElement Model(JsonElement status, string key) =>
        status.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("key").GetString() == key);
}
