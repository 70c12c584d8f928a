using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Waiting;

/// <summary>A load's progress as /status shows it: lms's own percentage while lms prints it, an estimate where there is none, and a load that stops.</summary>
public sealed class LoadProgressTests(ITestOutputHelper output)
{
    private const string Model = "qwen/qwen3-8b";

    private sealed record Sample(long At, double? Progress, string? Source, double? EtaMs);

    /// <summary>The loading instance of <see cref="Model"/> in /status, read now (At: when the answer arrived).</summary>
    private static async Task<Sample?> LoadingAsync(HttpClient client)
    {
        var status = await (await client.GetAsync("/status")).ReadJson();
        var at = Stopwatch.GetTimestamp();
        foreach (var instance in status.GetProperty("hosts")[0].GetProperty("instances").EnumerateArray())
        {
            if (instance.GetProperty("model").GetString() != Model || instance.GetProperty("state").GetString() != "loading") continue;
            return new Sample(at, Number(instance, "loadProgress"), instance.GetProperty("progressSource").GetString(), Number(instance, "etaMs"));
        }
        return null;
    }

    private static double? Number(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static async Task<List<Sample>> SampleWhileAsync(HttpClient client, Task until)
    {
        var samples = new List<Sample>();
        while (!until.IsCompleted)
        {
            if (await LoadingAsync(client) is { } sample) samples.Add(sample);
            await Task.Delay(50);
        }
        return samples;
    }

    [Fact(Timeout = 30000)]
    public async Task LmsProgress_ReachesStatusWithinASecondOfItsPrinting_RisingFromZeroToOne()
    {
        var loadTime = TimeSpan.FromSeconds(3);
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = loadTime });

        var chat = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        var samples = await SampleWhileAsync(env.Proxy.Client(), chat);
        using var response = await chat;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(samples.Count > 10, $"{samples.Count} samples");
        // Until lms prints its first percentage (its start-up takes hundreds of ms) there is no real progress yet.
        Assert.All(samples.Where(s => s.Progress is null), s => Assert.Equal("estimate", s.Source));
        var real = samples.Where(s => s.Progress is not null).ToList();
        Assert.All(real, s => Assert.Equal("lms", s.Source));
        Assert.True(real[0].Progress < 0.2, $"first progress {real[0].Progress}");
        Assert.True(real[^1].Progress >= 0.85, $"last progress {real[^1].Progress}");
        for (var i = 1; i < real.Count; i++) Assert.True(real[i].Progress >= real[i - 1].Progress, "progress never goes back");
        // The fake lms prints (now - its start) / LoadTime; its start is the simulator's load end minus LoadTime. What
        // /status showed must be what lms printed less than a second before the answer arrived.
        var simulatorStart = env.Simulator.State.LastLoadCompletedTimestamp - (long)(loadTime.TotalSeconds * Stopwatch.Frequency);
        var staleness = real.Select(s => (s.At - simulatorStart) / (double)Stopwatch.Frequency - s.Progress!.Value * loadTime.TotalSeconds).ToList();
        output.WriteLine($"{real.Count} samples; staleness max {staleness.Max():0.000} s, mean {staleness.Average():0.000} s");
        Assert.True(staleness.Max() < 1.0, $"progress reached /status {staleness.Max():0.00} s after lms printed it");
    }

    [Fact(Timeout = 30000)]
    public async Task RestLoader_HasNoRealProgress_SoStatusShowsAnEstimateFromTheLastLoadTime()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5) }, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" });
        var status = env.Proxy.Client();

        var first = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        var firstSamples = await SampleWhileAsync(status, first);
        (await first).Dispose();
        await env.UnloadAsync(Model);
        var second = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        var secondSamples = await SampleWhileAsync(status, second);
        (await second).Dispose();

        // No history: the progress is unknown, and it says it would be an estimate.
        Assert.NotEmpty(firstSamples);
        Assert.All(firstSamples, s => Assert.Equal(("estimate", (double?)null, (double?)null), (s.Source, s.Progress, s.EtaMs)));
        Assert.NotEmpty(secondSamples);
        Assert.All(secondSamples, s => Assert.Equal("estimate", s.Source));
        Assert.All(secondSamples, s => Assert.InRange(s.Progress!.Value, 0, 0.99));
        Assert.All(secondSamples, s => Assert.InRange(s.EtaMs!.Value, 0, 2000));
        Assert.True(secondSamples[^1].Progress > secondSamples[0].Progress, "the estimate moves on");
    }

    [Fact(Timeout = 30000)]
    public async Task StalledLoad_IsStopped_AndTheClientAndStatusAreToldThePercentageItReached()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1), LoadStallsAt = 37 },
            new Dictionary<string, string?> { ["LmsProxy:LoadStallTimeout"] = "00:00:01.500" });
        var started = Stopwatch.GetTimestamp();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
        var took = Stopwatch.GetElapsedTime(started);
        var message = await response.ErrorMessage();
        var model = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("models").EnumerateArray().Single(m => m.GetProperty("key").GetString() == Model);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("stopped at 37%: no progress for 2 s (LmsProxy:LoadStallTimeout)", message);
        Assert.Contains("stopped at 37%", model.GetProperty("lastError").GetString());
        Assert.Equal("not loaded", model.GetProperty("state").GetString());
        Assert.True(took < TimeSpan.FromSeconds(6), $"took {took}: the stall, not LoadTimeout (5 min), ended it");
        Assert.Equal(0, env.Simulator.State.LoadCount(Model));
        // The lms process was killed: nothing of it keeps the simulator's load going.
        await Eventually.Until(() => env.Simulator.State.Instances().Count == 0);
    }

    /// <summary>The ETA goal: from the third load of a model on, the time left /status gives mid-load is within 25% of the truth.</summary>
    [Fact(Timeout = 60000)]
    public async Task Eta_FromTheThirdLoadOn_IsWithinAQuarterOfTheTimeLeft()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2) });
        var status = env.Proxy.Client();
        var errors = new List<double>();

        for (var load = 1; load <= 4; load++)
        {
            var chat = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Model));
            Sample? mid = null;
            while (!chat.IsCompleted && mid is null)
            {
                if (await LoadingAsync(status) is { Progress: >= 0.3, EtaMs: not null } sample) mid = sample;
                else await Task.Delay(30);
            }
            using var response = await chat;
            var done = Stopwatch.GetTimestamp();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.NotNull(mid);
            var actualMs = (done - mid.At) * 1000.0 / Stopwatch.Frequency;
            var error = Math.Abs(mid.EtaMs!.Value - actualMs) / actualMs;
            output.WriteLine($"load {load}: at {mid.Progress:P0} eta {mid.EtaMs:0} ms, actually {actualMs:0} ms left: error {error:P0}");
            if (load >= 3) errors.Add(error);
            await env.UnloadAsync(Model);
        }

        Assert.All(errors, e => Assert.True(e < 0.25, $"ETA error {e:P0}"));
    }
}
