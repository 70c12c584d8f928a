using System.Net;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Gate;

/// <summary>Holds outlast evictions: re-sends are bounded by the hold deadline, and only a self-contradicting LM Studio ends them early.</summary>
public sealed class EvictionStormTests
{
    private static readonly string[] Models = ["qwen/qwen3-8b", "qwen/qwen3-8b-instruct", "google/gemma-3-1b"];

    [Fact(Timeout = 120000)]
    public async Task OneModelEvictedEverySecond_EightClientsFor20s_WithRealisticLms_EveryRequestGets200()
    {
        // 1.5 s loads through the fake lms, which (like the real Node program) costs 250 ms per run.
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5), ResponseDelay = TimeSpan.FromMilliseconds(20) });
        var outcomes = new Dictionary<string, int>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        var evictions = 0;
        var evictor = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(Random.Shared.Next(700, 1300));
                env.Simulator.State.Evict(Models[Random.Shared.Next(Models.Length)]);
                evictions++;
            }
        });
        var clients = Enumerable.Range(0, 8).Select(c => Task.Run(async () =>
        {
            using var client = env.Proxy.Client(TimeSpan.FromMinutes(2));
            for (var n = c; !stop.IsCancellationRequested; n++)
            {
                using var response = await client.PostAsync("/v1/chat/completions", Json.Chat(Models[n % Models.Length]));
                var outcome = response.StatusCode == HttpStatusCode.OK ? "200" : $"{(int)response.StatusCode} {await response.ErrorCode()}: {await response.ErrorMessage()}";
                lock (outcomes) outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }
        })).ToList();
        await Task.WhenAll(clients);
        await evictor;

        Assert.Equal(["200"], outcomes.Keys);
        Assert.True(outcomes["200"] > 40, $"{outcomes["200"]} requests");
        Assert.True(evictions >= 15, $"{evictions} evictions");
        // The evictions were felt (reloads: the proxy learns of them from "not loaded" answers, cut-offs, or its reads of
        // LM Studio's list) and absorbed.
        Assert.True(Models.Sum(env.Simulator.State.LoadCount) >= Models.Length + 5, $"{Models.Sum(env.Simulator.State.LoadCount)} loads");
        // Every load is one lms process (the start-up read of lms ls aside): nothing else runs on the critical path.
        Assert.Equal(env.Lms.CallsOf("load"), env.Lms.Calls.Count(c => c != "ls --json"));
        Assert.Equal(Models.Sum(env.Simulator.State.LoadCount), env.Lms.CallsOf("load"));
    }

    [Fact(Timeout = 30000)]
    public async Task LmStudioThatListsTheModelButKeepsAnsweringNotLoaded_Gets503NamingTheCause_AfterThreeTries()
    {
        using var lmStudio = WireMockServer.Start();
        lmStudio.Given(Request.Create().WithPath("/api/v1/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json")
            .WithBody("""{"models":[{"type":"llm","key":"qwen/qwen3-8b","size_bytes":5000000000,"loaded_instances":[{"id":"qwen/qwen3-8b","config":{"context_length":4096}}]}]}"""));
        lmStudio.Given(Request.Create().WithPath("/v1/chat/completions").UsingPost()).RespondWith(Response.Create().WithStatusCode(400).WithHeader("Content-Type", "application/json")
            .WithBody("""{"error":{"message":"No models loaded. Please load a model in the developer page or use the 'lms load' command.","type":"invalid_request_error","param":"model","code":null}}"""));
        await using var proxy = new ProxyApp(new Uri(lmStudio.Url!));
        using var client = proxy.Client();
        await Eventually.Until(() => proxy.Refreshed);

        using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("lmstudio_inconsistent", await response.ErrorCode());
        Assert.Contains("lists 'qwen/qwen3-8b' as loaded but answered \"No models loaded\" to it 3 times in a row", await response.ErrorMessage());
        Assert.Equal(3, lmStudio.LogEntries.Count(e => e.RequestMessage.Path == "/v1/chat/completions"));
    }
}
