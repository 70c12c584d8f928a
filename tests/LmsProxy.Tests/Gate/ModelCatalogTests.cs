using System.Net;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Gate;

/// <summary>What clients see of the models: the full list, aliases, per-model load settings, preloads kept loaded.</summary>
public sealed class ModelCatalogTests
{
    [Fact(Timeout = 30000)]
    public async Task ModelList_ShowsEveryDownloadedModelAndAlias_EvenWhenLmStudioListsOnlyLoadedOnes()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:Aliases:gpt-4o-mini"] = "qwen/qwen3-8b" });

        using var response = await env.Client.GetAsync("/v1/models");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.ReadJson();
        Assert.Equal("list", body.GetProperty("object").GetString());
        var ids = body.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.Equal(["qwen/qwen3-8b", "qwen/qwen3-8b-instruct", "google/gemma-3-1b", "text-embedding-nomic-embed-text-v1.5", "gpt-4o-mini"], ids);
        Assert.All(body.GetProperty("data").EnumerateArray(), m => Assert.Equal("model", m.GetProperty("object").GetString()));
    }

    [Fact(Timeout = 30000)]
    public async Task Alias_IsRewrittenToTheRealKey_InTheForwardedBody()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:Aliases:gpt-4o-mini"] = "qwen/qwen3-8b" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("gpt-4o-mini"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("qwen/qwen3-8b", (await response.ReadJson()).GetProperty("model").GetString());
        Assert.Equal(1, env.Simulator.State.LoadCount("qwen/qwen3-8b"));
    }

    [Fact(Timeout = 30000)]
    public async Task PerModelSettings_AreAppliedWhenTheProxyLoads()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Models:qwen/qwen3-8b:ContextLength"] = "8192",
            ["LmsProxy:Models:qwen/qwen3-8b:Gpu"] = "max",
            ["LmsProxy:Models:qwen/qwen3-8b:Ttl"] = "600",
            ["LmsProxy:Models:qwen/qwen3-8b:Parallel"] = "2",
        });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var load = Assert.Single(env.Lms.Calls, c => c.StartsWith("load", StringComparison.Ordinal));
        Assert.EndsWith("--context-length 8192 --gpu max --ttl 600 --parallel 2", load);
        Assert.Equal(8192, Assert.Single(env.Simulator.State.Instances()).ContextLength);
    }

    [Fact(Timeout = 30000)]
    public async Task PreloadedModel_IsLoadedAtStartup_AndReloadedAfterLmStudioDropsIt()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Preload:0"] = "google/gemma-3-1b",
            ["LmsProxy:RefreshInterval"] = "00:00:00.200",
        });

        await Eventually.Until(() => env.Simulator.State.FindLoaded("google/gemma-3-1b") is not null);
        env.Simulator.State.Evict("google/gemma-3-1b");
        await Eventually.Until(() => env.Simulator.State.LoadCount("google/gemma-3-1b") == 2 && env.Simulator.State.FindLoaded("google/gemma-3-1b") is not null);

        Assert.Equal(0, env.Simulator.State.InferenceRequests);
        Assert.Equal(["google/gemma-3-1b"], env.Simulator.State.Instances().Select(i => i.Id));
    }
}
