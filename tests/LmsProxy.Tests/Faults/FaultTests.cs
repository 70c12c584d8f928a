using System.Net;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Faults;

/// <summary>Under faults no request is lost: each gets its answer or a clear error, and the proxy keeps serving.</summary>
public sealed class FaultTests
{
    [Fact(Timeout = 60000)]
    public async Task LmStudioRestartedMidRun_EveryRequestGetsAnAnswerOrAClearError_ThenAllSucceedAgain()
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100) };
        var first = await SimulatorApp.StartAsync(options);
        var address = first.Url.GetLeftPart(UriPartial.Authority);
        await using var proxy = new ProxyApp(first.Url, new Dictionary<string, string?> { ["LmsProxy:RefreshInterval"] = "00:00:00.500" });
        using var client = proxy.Client();
        var outcomes = new List<(HttpStatusCode Status, string? Code)>();

        var done = false;
        async Task Send()
        {
            while (!Volatile.Read(ref done))
            {
                using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
                var code = response.StatusCode == HttpStatusCode.OK ? null : await response.ErrorCode();
                lock (outcomes) outcomes.Add((response.StatusCode, code));
            }
        }

        var load = Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Send()));
        await Task.Delay(300);
        await first.DisposeAsync();                        // LM Studio goes away, with its loaded models
        await Task.Delay(300);
        await using var second = await SimulatorApp.StartAsync(options, address); // and comes back, nothing loaded
        await Task.Delay(500);
        Volatile.Write(ref done, true);
        await load;

        Assert.All(outcomes, o => Assert.True(o.Status == HttpStatusCode.OK || o.Code is "upstream_unavailable" or "model_load_failed", $"{o.Status} {o.Code}"));
        Assert.Contains(outcomes, o => o.Status != HttpStatusCode.OK);
        using var after = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        Assert.True(second.State.LoadCount("qwen/qwen3-8b") >= 1, "the restarted LM Studio had the model loaded again by the proxy");
        Assert.DoesNotContain(outcomes, o => o.Code is "model_not_loaded");
    }

    [Fact(Timeout = 90000)]
    public async Task ModelEvictedRepeatedlyDuringConcurrentStreams_NoClientSeesNotLoaded_OnlyCutOffsEndEarly()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50), TokenDelay = TimeSpan.FromMilliseconds(2) },
            new Dictionary<string, string?> { ["LmsProxy:RefreshInterval"] = "01:00:00", ["LmsProxy:Loader"] = "rest" });
        using var stop = new CancellationTokenSource();
        var evictions = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(150);
                env.Simulator.State.Evict("qwen/qwen3-8b");
            }
        });

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            using var client = env.Proxy.Client(TimeSpan.FromSeconds(20));
            var seen = new List<string>();
            for (var i = 0; i < 15; i++)
            {
                try
                {
                    using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: true));
                    var body = await response.Content.ReadAsStringAsync();
                    seen.Add(response.StatusCode != HttpStatusCode.OK ? $"{(int)response.StatusCode} {body}" : body.EndsWith("data: [DONE]\n\n", StringComparison.Ordinal) ? "complete" : "cut");
                }
                catch (HttpRequestException)
                {
                    seen.Add("cut"); // LM Studio unloaded the model under a stream that had begun: it cannot be re-sent
                }
            }
            return seen;
        }));
        stop.Cancel();
        await evictions;

        var all = outcomes.SelectMany(o => o).ToList();
        Assert.All(all, o => Assert.True(o is "complete" or "cut", o));
        Assert.True(all.Count(o => o == "cut") <= env.Simulator.State.CutOffRequests, "only streams LM Studio cut off end early");
        Assert.True(all.Count(o => o == "complete") > all.Count / 2);
        Assert.True(env.Simulator.State.NotLoadedAnswers > 0, "the evictions should have caused refusals for the proxy to absorb");
    }
}
