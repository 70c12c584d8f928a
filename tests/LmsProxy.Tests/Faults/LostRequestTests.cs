using System.Diagnostics;
using System.Net;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Faults;

/// <summary>The bugs that lost requests or stopped the proxy (issue 15), each reproduced through real sockets.</summary>
public sealed class LostRequestTests
{
    [Fact(Timeout = 60000)]
    public async Task AModelWarmOnlyOnAHostThatDies_IsLoadedOnceOnAnotherHostThatHasIt_AndEveryRequestIsAnswered()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, _ => new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(300) });
        await env["gpu-a"].State.LoadAsync(env["gpu-a"].State.Find("qwen/qwen3-8b")!, null, null);
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);
        using (var warm = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b")))
        {
            Assert.Equal("gpu-a", warm.Headers.GetValues("X-LmsProxy-Host").Single());
        }

        await env["gpu-a"].KillAsync();
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 6).Select(async c =>
        {
            var seen = new List<string>();
            for (var i = 0; i < 5; i++)
            {
                using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: (c + i) % 2 == 0));
                var body = await response.Content.ReadAsStringAsync();
                seen.Add(response.StatusCode == HttpStatusCode.OK ? "200 " + response.Headers.GetValues("X-LmsProxy-Host").Single() : $"{(int)response.StatusCode} {body}");
            }
            return seen;
        }));

        Assert.All(outcomes.SelectMany(o => o), o => Assert.Equal("200 gpu-b", o));
        Assert.Equal(1, env["gpu-b"].State.LoadCount("qwen/qwen3-8b"));
    }

    [Fact(Timeout = 60000)]
    public async Task AHostThatDropsPackets_CostsOneConnectTimeout_ThenTheModelIsServedElsewhere()
    {
        await using var a = await SimulatorApp.StartAsync(new SimulatorOptions());
        await using var b = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(200) });
        using var relay = new BlackHoleRelay(a.Url);
        await a.State.LoadAsync(a.State.Find("qwen/qwen3-8b")!, null, null);
        await using var proxy = new ProxyApp(a.Url, new Dictionary<string, string?>
        {
            ["LmsProxy:Hosts:gpu-a:Url"] = relay.Url.GetLeftPart(UriPartial.Authority),
            ["LmsProxy:Hosts:gpu-b:Url"] = b.Url.GetLeftPart(UriPartial.Authority),
            ["LmsProxy:ConnectTimeout"] = "00:00:01",
            ["LmsProxy:HealthCheckInterval"] = "00:00:30",
        });
        using var client = proxy.Client();
        await Eventually.Until(() => proxy.Refreshed);

        await relay.BecomeBlackHoleAsync();
        var slow = 0;
        for (var i = 0; i < 8; i++)
        {
            var watch = Stopwatch.StartNew();
            using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"request {i}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            Assert.Equal("gpu-b", response.Headers.GetValues("X-LmsProxy-Host").Single());
            if (watch.Elapsed > TimeSpan.FromSeconds(0.9)) slow++;
        }
        Assert.True(slow <= 1, $"{slow} requests waited for a connect time-out; only the first should");
    }

    [Fact(Timeout = 30000)]
    public async Task AHeldRequestThatLmStudioAnswersNotLoaded_IsNotReSentInALoop()
    {
        // LM Studio loads the model and lists it as loaded from then on, but answers every request "No models loaded".
        using var lmStudio = WireMockServer.Start();
        var loaded = 0;
        lmStudio.Given(Request.Create().WithPath("/api/v1/models").UsingGet()).RespondWith(Response.Create().WithCallback(_ => new WireMock.ResponseMessage
        {
            StatusCode = 200,
            Headers = new Dictionary<string, WireMock.Types.WireMockList<string>> { ["Content-Type"] = new("application/json") },
            BodyData = new WireMock.Util.BodyData
            {
                DetectedBodyType = WireMock.Types.BodyType.String,
                BodyAsString = Volatile.Read(ref loaded) == 0
                    ? """{"models":[{"type":"llm","key":"qwen/qwen3-8b","size_bytes":5000000000,"loaded_instances":[]}]}"""
                    : """{"models":[{"type":"llm","key":"qwen/qwen3-8b","size_bytes":5000000000,"loaded_instances":[{"id":"qwen/qwen3-8b","config":{"context_length":4096}}]}]}""",
            },
        }));
        lmStudio.Given(Request.Create().WithPath("/api/v1/models/load").UsingPost()).RespondWith(Response.Create().WithCallback(_ =>
        {
            Volatile.Write(ref loaded, 1);
            return new WireMock.ResponseMessage
            {
                StatusCode = 200,
                Headers = new Dictionary<string, WireMock.Types.WireMockList<string>> { ["Content-Type"] = new("application/json") },
                BodyData = new WireMock.Util.BodyData { DetectedBodyType = WireMock.Types.BodyType.String, BodyAsString = """{"type":"llm","instance_id":"qwen/qwen3-8b","load_time_seconds":0.1,"status":"loaded"}""" },
            };
        }));
        lmStudio.Given(Request.Create().WithPath("/v1/chat/completions").UsingPost()).RespondWith(Response.Create().WithStatusCode(400).WithHeader("Content-Type", "application/json")
            .WithBody("""{"error":{"message":"No models loaded. Please load a model in the developer page or use the 'lms load' command.","type":"invalid_request_error","param":"model","code":null}}"""));
        await using var proxy = new ProxyApp(new Uri(lmStudio.Url!), new Dictionary<string, string?> { ["LmsProxy:HoldTimeout"] = "00:00:15" });
        using var client = proxy.Client();
        await Eventually.Until(() => proxy.Refreshed);

        var watch = Stopwatch.StartNew();
        using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("lmstudio_inconsistent", await response.ErrorCode());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"answered after {watch.Elapsed.TotalSeconds:0.0} s");
        Assert.InRange(lmStudio.LogEntries.Count(e => e.RequestMessage.Path == "/v1/chat/completions"), 1, 4);
    }

    [Fact(Timeout = 60000)]
    public async Task HeldRequestsThatLmStudioCutsOffBeforeAnswering_EachGetsAClearError_AfterAFewTries_AndTheLogStaysShort()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(500), AbortRequestsContaining = "poison" },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:HoldTimeout"] = "00:00:30" });

        var watch = Stopwatch.StartNew();
        var responses = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => env.Client.PostAsync("/v1/chat/completions",
            Json.Body("""{"model":"qwen/qwen3-8b","messages":[{"role":"user","content":"poison"}]}"""))));

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"answered after {watch.Elapsed.TotalSeconds:0.0} s");
        foreach (var response in responses)
        {
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            Assert.Equal("upstream_aborted", await response.ErrorCode());
            Assert.Contains("closed the connection before answering", await response.ErrorMessage());
        }
        Assert.InRange(env.Simulator.State.PoisonedRequests, 10, 40);
        Assert.Equal(1, env.Simulator.State.LoadCount("qwen/qwen3-8b")); // the model stayed loaded: no reload storm
        var logs = env.Proxy.Logs.Lines;
        Assert.True(logs.Count < 100, $"{logs.Count} log lines");
        Assert.DoesNotContain(logs, l => l.Contains("[exception ", StringComparison.Ordinal)); // no stack traces
    }

    [Fact(Timeout = 60000)]
    public async Task ASilentHost_NeitherStopsTheProxyNorFailsRequestsForTheOtherHost()
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100) });
        using var silent = new SilentServer();
        await using var proxy = new ProxyApp(sim.Url, new Dictionary<string, string?>
        {
            ["LmsProxy:Hosts:gpu-a:Url"] = sim.Url.GetLeftPart(UriPartial.Authority),
            ["LmsProxy:Hosts:gpu-b:Url"] = silent.Url.GetLeftPart(UriPartial.Authority),
            ["LmsProxy:ApiTimeout"] = "00:00:01",
            ["LmsProxy:RefreshInterval"] = "00:00:00.500",
        });
        using var client = proxy.Client();
        var lifetime = proxy.Services.GetRequiredService<IHostApplicationLifetime>();

        var until = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (DateTime.UtcNow < until)
        {
            using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the proxy is stopping");
        }
        using var unknown = await client.PostAsync("/v1/chat/completions", Json.Chat("no/such-model"));
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("model_not_found", await unknown.ErrorCode());
        var status = await (await client.GetAsync("/status")).ReadJson();
        var b = status.GetProperty("hosts").EnumerateArray().Single(h => h.GetProperty("name").GetString() == "gpu-b");
        Assert.Contains("did not answer", b.GetProperty("lastError").GetString());
        Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the proxy is stopping");
    }

    [Fact(Timeout = 30000)]
    public async Task OnlySilentHost_ARequestGetsUpstreamUnavailable_NotA500()
    {
        using var silent = new SilentServer();
        await using var proxy = new ProxyApp(silent.Url, new Dictionary<string, string?> { ["LmsProxy:ApiTimeout"] = "00:00:01" });
        using var client = proxy.Client();

        using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_unavailable", await response.ErrorCode());
        Assert.Contains("did not answer", await response.ErrorMessage());
    }

    [Fact(Timeout = 30000)]
    public async Task AnAliasThatChangesTheBodysLength_WithStreamKeepAlive_ReachesLmStudioAndStreamsWhole()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) }, new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:StreamKeepAlive"] = "comment",
            ["LmsProxy:KeepAliveAfter"] = "00:00:00.300",
            ["LmsProxy:Aliases:gemma"] = "google/gemma-3-1b",
        });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("gemma", stream: true));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith(": loading gemma", body, StringComparison.Ordinal);
        Assert.Contains("token4", body, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
        Assert.Equal(1, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task AnUnexpectedFailureInTheMiddleOfALoad_EndsIt_TheRequestGetsAClearErrorFast_AndTheNextLoadWorks()
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100), LoadAnswerCharset = "no-such-charset" };
        await using var env = await GateEnvironment.StartAsync(options, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:HoldTimeout"] = "00:00:20" });

        var watch = Stopwatch.StartNew();
        using var failed = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        Assert.Equal("model_load_failed", await failed.ErrorCode());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"answered after {watch.Elapsed.TotalSeconds:0.0} s");

        // LM Studio still loaded it: the proxy sees it in the list, and nothing is wedged in "loading".
        options.LoadAnswerCharset = null;
        using var next = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);
        using var again = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task StoppingTheProxy_KillsTheLmsLoadUnderWay()
    {
        var env = await GateEnvironment.StartAsync(new SimulatorOptions(), new Dictionary<string, string?> { ["LmsProxy:Lms:Timeout"] = "00:05:00", ["LmsProxy:LoadTimeout"] = "00:05:00" }, lmsMisbehaviour: "HANG_ON=load");
        var request = env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        await Eventually.Until(() => env.Lms.HungPid is not null);
        var pid = env.Lms.HungPid!.Value;

        await env.Proxy.DisposeAsync();

        await Eventually.Until(() => !IsRunning(pid), TimeSpan.FromSeconds(5));
        try { await request; } catch (HttpRequestException) { } catch (TaskCanceledException) { }
        await env.DisposeAsync();
    }

    [Fact(Timeout = 30000)]
    public async Task ClientsSprayingUnknownNames_CauseAFewCatalogReads_NotOnePerRequest()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });
        await Eventually.Until(() => env.Proxy.Refreshed);
        var before = env.Simulator.State.CatalogReads;

        var responses = await Task.WhenAll(Enumerable.Range(0, 60).Select(i => env.Client.PostAsync("/v1/chat/completions", Json.Chat($"random/name-{i % 20}"))));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.NotFound, r.StatusCode));
        // One read per wave of arrivals at most (a read under way is joined; a name found in none is remembered), not one per request.
        Assert.InRange(env.Simulator.State.CatalogReads - before, 1, 12);
    }

    [Fact(Timeout = 30000)]
    public async Task AnOperatorsUnloadOfAPreloadedModel_IsNotUndoneByTheNextRefresh()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:Preload:0"] = "google/gemma-3-1b",
            ["LmsProxy:RefreshInterval"] = "00:00:00.300",
        });
        await Eventually.Until(() => env.Proxy.IsLoaded("google/gemma-3-1b"));

        using var unload = new HttpRequestMessage(HttpMethod.Post, "/models/google%2Fgemma-3-1b/unload");
        unload.Headers.Add("X-LmsProxy-Action", "1");
        using var answer = await env.Client.SendAsync(unload);
        Assert.Equal(HttpStatusCode.Accepted, answer.StatusCode);
        await Eventually.Until(() => !env.Proxy.IsLoaded("google/gemma-3-1b"));
        await Task.Delay(1500); // several refreshes

        Assert.False(env.Proxy.IsLoaded("google/gemma-3-1b"));
        Assert.Equal(1, env.Simulator.State.LoadCount("google/gemma-3-1b"));
    }

    [Fact(Timeout = 30000)]
    public async Task AClientsLoadRequest_WithSeveralHosts_GoesToTheHostAllowedToServeTheModel()
    {
        await using var env = await ClusterEnvironment.StartAsync(2, settings: new Dictionary<string, string?>
        {
            ["LmsProxy:Hosts:gpu-a:Models:0"] = "qwen/*",
            ["LmsProxy:Hosts:gpu-b:Models:0"] = "google/*",
        });

        using var load = await env.Client.PostAsync("/api/v1/models/load", Json.Body("""{"model":"google/gemma-3-1b"}"""));
        using var ambiguous = await env.Client.PostAsync("/api/v1/models/load", Json.Body("""{"model":"text-embedding-nomic-embed-text-v1.5"}"""));

        Assert.Equal(HttpStatusCode.OK, load.StatusCode);
        Assert.Equal("gpu-b", load.Headers.GetValues("X-LmsProxy-Host").Single());
        Assert.Equal(1, env["gpu-b"].State.LoadCount("google/gemma-3-1b"));
        Assert.Equal(0, env["gpu-a"].State.LoadCount("google/gemma-3-1b"));
        Assert.Equal(HttpStatusCode.NotFound, ambiguous.StatusCode); // no host may serve it
        await Eventually.Until(() => env.Proxy.IsLoaded("google/gemma-3-1b")); // the scheduler knows what the client loaded
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
