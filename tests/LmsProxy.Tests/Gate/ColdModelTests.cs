using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Gate;

/// <summary>A request for a downloaded but unloaded model gets its answer, never LM Studio's "No models loaded".</summary>
public sealed class ColdModelTests
{
    [Theory(Timeout = 30000)]
    [InlineData("lms", 400)]
    [InlineData("rest", 400)]
    [InlineData("lms", 404)]
    public async Task ColdModel_IsLoadedOnce_AndTheRequestAnswered(string loader, int notLoadedStatus)
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { NotLoadedStatus = notLoadedStatus },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = loader });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("Hello from qwen/qwen3-8b.", (await response.ReadJson()).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.True(long.Parse(response.Headers.GetValues("X-LmsProxy-Hold-Ms").Single()) >= 150, "held while the 200 ms load ran");
        Assert.Equal(1, env.Simulator.State.LoadCount("qwen/qwen3-8b"));
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
        Assert.Equal(loader == "lms" ? 1 : 0, env.Lms.CallsOf("load"));
    }

    [Fact(Timeout = 60000)]
    public async Task BurstOf50ColdRequests_CausesExactlyOneLoad_AndAllAreAnswered()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1) });

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(1, env.Lms.CallsOf("load"));
        Assert.Equal(1, env.Simulator.State.LoadCount("qwen/qwen3-8b"));
        Assert.Equal(["qwen/qwen3-8b"], env.Simulator.State.Instances().Select(i => i.Id));
        Assert.Equal(0, env.Proxy.HeldNow);
        foreach (var r in responses) r.Dispose();
    }

    [Fact(Timeout = 60000)]
    public async Task WithJitOn_ABurstDirectToLmStudioDuplicatesInstances_ThroughTheProxyItDoesNot()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { Jit = true, DuplicateInstanceBug = true, LoadTime = TimeSpan.FromMilliseconds(500) });
        using var direct = new HttpClient { BaseAddress = env.Simulator.Url };

        await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => direct.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"))));
        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))));

        Assert.Equal(5, env.Simulator.State.Instances().Count(i => i.Model.Key == "google/gemma-3-1b")); // LM Studio's bug #1751, reproduced
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(["qwen/qwen3-8b"], env.Simulator.State.Instances().Where(i => i.Model.Key == "qwen/qwen3-8b").Select(i => i.Id));
    }

    [Fact(Timeout = 30000)]
    public async Task LmsLoad_TargetsTheExactModel_NeverAFuzzyNeighbour_NorADuplicate()
    {
        await using var env = await GateEnvironment.StartAsync();

        using var first = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        env.Simulator.State.Evict("qwen/qwen3-8b");
        // The registry still believes it is loaded; the next answer is "No models loaded" and the proxy re-loads.
        using var second = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(0, env.Simulator.State.LoadCount("qwen/qwen3-8b-instruct"));
        Assert.Equal(["qwen/qwen3-8b"], env.Simulator.State.Instances().Select(i => i.Id));
        Assert.All(env.Lms.Calls.Where(c => c.StartsWith("load", StringComparison.Ordinal)),
            c => Assert.Equal("load lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf --exact -y --local --identifier qwen/qwen3-8b", c));
    }

    [Fact(Timeout = 30000)]
    public async Task AlreadyLoadedModel_IsNotLoadedAgain()
    {
        await using var env = await GateEnvironment.StartAsync();
        var model = env.Simulator.State.Find("google/gemma-3-1b")!;
        await env.Simulator.State.LoadAsync(model, null, null);

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, env.Simulator.State.LoadCount("google/gemma-3-1b"));
        Assert.Equal(0, env.Lms.CallsOf("load"));
        Assert.DoesNotContain(env.Simulator.State.Instances(), i => i.Id.Contains(':'));
    }

    [Fact(Timeout = 30000)]
    public async Task EvictedBetweenCheckAndForward_IsReloadedAndResent_ClientSees200()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:RefreshInterval"] = "01:00:00" });
        using var warm = await env.Client.PostAsync("/v1/embeddings", Json.Body("{\"model\":\"text-embedding-nomic-embed-text-v1.5\",\"input\":\"a\"}"));
        env.Simulator.State.Evict("text-embedding-nomic-embed-text-v1.5");

        using var response = await env.Client.PostAsync("/v1/embeddings", Json.Body("{\"model\":\"text-embedding-nomic-embed-text-v1.5\",\"input\":\"a\"}"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("list", (await response.ReadJson()).GetProperty("object").GetString());
        Assert.Equal(1, env.Simulator.State.NotLoadedAnswers);
        Assert.Equal(2, env.Simulator.State.LoadCount("text-embedding-nomic-embed-text-v1.5"));
        // The request's one log line says it was re-sent (the per-re-send line is at Debug: one line per request). It is
        // written as the request ends, which may be a moment after the client has the whole answer.
        static bool Resent(string l) => l.Contains("/v1/embeddings", StringComparison.Ordinal) && l.Contains("status=200", StringComparison.Ordinal) && l.Contains("resends=1", StringComparison.Ordinal);
        await Eventually.Until(() => env.Proxy.Logs.Lines.Any(Resent), TimeSpan.FromSeconds(5));
        Assert.Contains(env.Proxy.Logs.Lines, Resent);
    }

    [Fact(Timeout = 30000)]
    public async Task WarmPath_RunsNoProcess_AndMakesNoExtraCallToLmStudio()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:RefreshInterval"] = "01:00:00" });
        using var cold = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        var lmsCalls = env.Lms.Calls.Count;
        var catalogReads = env.Simulator.State.CatalogReads;
        var inferences = env.Simulator.State.InferenceRequests;

        for (var i = 0; i < 20; i++)
        {
            using var warm = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);
            Assert.False(warm.Headers.Contains("X-LmsProxy-Hold-Ms"));
        }

        Assert.Equal(lmsCalls, env.Lms.Calls.Count);
        Assert.Equal(catalogReads, env.Simulator.State.CatalogReads);
        Assert.Equal(inferences + 20, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task StreamedRequest_ToColdModel_StreamsAfterTheLoad()
    {
        await using var env = await GateEnvironment.StartAsync();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: true));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        Assert.Equal("Hello", JsonDocument.Parse(events[0]["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
    }
}
