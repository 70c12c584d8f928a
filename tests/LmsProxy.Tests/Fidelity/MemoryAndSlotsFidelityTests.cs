using System.Net;
using LmsProxy.Loading;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Fidelity;

/// <summary>
/// Issue 17 §4 (addendum F14, F22): the context and slots LM Studio applied, not the ones asked for. AutoFit can load
/// a far larger context; REST and JIT loads always get 4 slots, only lms load --parallel sets them. The proxy reads back
/// both, from /api/v1/models and from lms ps --json, and its admission uses the reported slots.
/// </summary>
public sealed class MemoryAndSlotsFidelityTests
{
    private const string Qwen = "qwen/qwen3-8b";

    [Fact(Timeout = 30000)]
    public async Task AutoFit_LoadsALargerContextThanAsked_AndTheProxyReadsBackWhatWasLoaded()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50), AutoFitContextLength = 131072 },
            new Dictionary<string, string?> { ["LmsProxy:Models:qwen/qwen3-8b:ContextLength"] = "4096" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        var lms = Assert.IsType<LmsCliLoader>(env.Proxy.Scheduler.Hosts[0].Loader.Loader);
        var ps = await lms.ListLoadedAsync(CancellationToken.None);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains(env.Lms.Calls, c => c.StartsWith("load ", StringComparison.Ordinal) && c.Contains("--context-length 4096"));
        Assert.Equal(131072, Assert.Single(env.Proxy.Scheduler.Catalog.Resolve(Qwen)!.Instances).ContextLength);
        Assert.Equal(131072, Assert.Single(ps).ContextLength);
        Assert.Equal(131072, Assert.Single(ps).ToLoadedInstance().ContextLength);
    }

    [Fact(Timeout = 30000)]
    public async Task ARestLoad_Gets4Slots_WhateverWasAsked_AndStatusShowsThem()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50), Parallel = 4 },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:Models:qwen/qwen3-8b:Parallel"] = "2" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var status = await env.Client.GetAsync("/status");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal([4], env.Simulator.State.Instances().Select(i => i.Parallel));
        var instance = (await status.ReadJson()).GetProperty("hosts")[0].GetProperty("instances")[0];
        Assert.Equal(4, instance.GetProperty("parallel").GetInt32());
    }

    [Fact(Timeout = 30000)]
    public async Task AnLmsLoad_WithParallel_GetsThoseSlots_AndStatusShowsThem()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50) },
            new Dictionary<string, string?> { ["LmsProxy:Models:qwen/qwen3-8b:Parallel"] = "2" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var status = await env.Client.GetAsync("/status");
        var lms = Assert.IsType<LmsCliLoader>(env.Proxy.Scheduler.Hosts[0].Loader.Loader);
        var ps = await lms.ListLoadedAsync(CancellationToken.None);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains(env.Lms.Calls, c => c.StartsWith("load ", StringComparison.Ordinal) && c.Contains("--parallel 2"));
        Assert.Equal(2, Assert.Single(ps).Parallel);
        var instance = (await status.ReadJson()).GetProperty("hosts")[0].GetProperty("instances")[0];
        Assert.Equal(2, instance.GetProperty("parallel").GetInt32());
    }
}
