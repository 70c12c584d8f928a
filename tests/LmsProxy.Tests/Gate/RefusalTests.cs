using System.Diagnostics;
using System.Net;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Gate;

/// <summary>What cannot be served gets a clear OpenAI-style error, fast, and never wedges the model.</summary>
public sealed class RefusalTests
{
    [Fact(Timeout = 30000)]
    public async Task UnknownModel_Gets404ModelNotFound_NamingAvailableModels_WithoutALoad()
    {
        await using var env = await GateEnvironment.StartAsync();
        var watch = Stopwatch.StartNew();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("gpt-5-turbo"));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var body = await response.ReadJson();
        Assert.Equal("model_not_found", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("qwen/qwen3-8b", body.GetProperty("error").GetProperty("message").GetString());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"took {watch.ElapsedMilliseconds} ms");
        Assert.Equal(0, env.Lms.CallsOf("load"));
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
        Assert.DoesNotContain(env.Proxy.Scheduler.Snapshot().Models, m => m.Key == "gpt-5-turbo"); // nothing kept for a name that matches nothing
    }

    [Theory(Timeout = 30000)]
    [InlineData("-y")]
    [InlineData("--host=evil.example")]
    [InlineData("qwen\u0000; rm -rf /")]
    [InlineData("a\nb")]
    [InlineData("")]
    [InlineData(" ")]
    public async Task HostileModelName_Gets400_AndNeverReachesLms(string name)
    {
        await using var env = await GateEnvironment.StartAsync();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(name));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_model", await response.ErrorCode());
        // Only the start-up read of lms's model paths ran; nothing the request named.
        Assert.All(env.Lms.Calls, c => Assert.Equal("ls --json", c));
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task VeryLongModelName_Gets400()
    {
        await using var env = await GateEnvironment.StartAsync();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(new string('q', 5000)));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        // Only the start-up read of lms's model paths ran; nothing the request named.
        Assert.All(env.Lms.Calls, c => Assert.Equal("ls --json", c));
    }

    [Fact(Timeout = 30000)]
    public async Task HungLms_Gets503WithinItsTimeout_IsKilled_AndTheNextRequestTriesAgain()
    {
        await using var env = await GateEnvironment.StartAsync(
            settings: new Dictionary<string, string?> { ["LmsProxy:Lms:Timeout"] = "00:00:02" }, lmsMisbehaviour: "HANG_ON=load");
        var watch = Stopwatch.StartNew();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        watch.Stop();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("model_load_failed", await response.ErrorCode());
        Assert.Contains("did not finish within 2 s and was killed", await response.ErrorMessage());
        Assert.True(response.Headers.RetryAfter is not null);
        Assert.InRange(watch.Elapsed, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(5));
        var pid = env.Lms.HungPid;
        Assert.NotNull(pid);
        // The kill signal is asynchronous; the whole tree (bash and its sleeping child) must be gone shortly after.
        await Eventually.Until(() => !IsRunning(pid.Value), TimeSpan.FromSeconds(2));

        env.Lms.Misbehave("");
        using var retry = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        Assert.Equal(HttpStatusCode.OK, retry.StatusCode);
    }

    [Theory(Timeout = 30000)]
    [InlineData("FAIL_ON=load", "simulated failure of lms load")]
    [InlineData("GARBAGE_ON=ls", "garbage {not json")]
    public async Task FailingOrGarbageLms_Gets503QuotingWhatLmsSaid(string misbehaviour, string quoted)
    {
        await using var env = await GateEnvironment.StartAsync(lmsMisbehaviour: misbehaviour);

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("model_load_failed", await response.ErrorCode());
        Assert.Contains(quoted, await response.ErrorMessage());
        Assert.Contains(env.Proxy.Logs.Lines, l => l.Contains("Loading qwen/qwen3-8b on default failed", StringComparison.Ordinal));

        // Nothing is wedged: once lms behaves, the same model loads.
        env.Lms.Misbehave("");
        using var after = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task HoldDeadline_Gets503WithRetryAfter_WhileTheLoadGoesOn()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2) },
            new Dictionary<string, string?> { ["LmsProxy:HoldTimeout"] = "00:00:00.300" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("model_loading", await response.ErrorCode());
        Assert.NotNull(response.Headers.RetryAfter);
        await Eventually.Until(() => env.Proxy.IsLoaded("qwen/qwen3-8b"));
        using var later = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        Assert.Equal(HttpStatusCode.OK, later.StatusCode);
        Assert.Equal(1, env.Simulator.State.LoadCount("qwen/qwen3-8b"));
    }

    [Fact(Timeout = 30000)]
    public async Task QueueCap_RejectsTheRequestBeyondIt_With503AndRetryAfter()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1) },
            new Dictionary<string, string?> { ["LmsProxy:MaxHeldPerModel"] = "2" });

        var held = Enumerable.Range(0, 2).Select(_ => env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))).ToList();
        await Eventually.Until(() => env.Proxy.HeldNow == 2);
        using var rejected = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, rejected.StatusCode);
        Assert.Equal("too_many_waiting", await rejected.ErrorCode());
        Assert.NotNull(rejected.Headers.RetryAfter);
        Assert.All(await Task.WhenAll(held), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
    }

    [Fact(Timeout = 30000)]
    public async Task ClientThatDisconnectsWhileHeld_LeavesTheQueueAtOnce()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3) });
        using var cts = new CancellationTokenSource();

        var request = env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"), cts.Token);
        await Eventually.Until(() => env.Proxy.HeldNow == 1);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);

        await Eventually.Until(() => env.Proxy.HeldNow == 0, TimeSpan.FromSeconds(1));
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task LmStudioDown_DuringAColdRequest_Gets502()
    {
        await using var env = await GateEnvironment.StartAsync();
        await env.Simulator.DisposeAsync();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_unavailable", await response.ErrorCode());
    }
    private static bool IsRunning(int pid)
    {
        try
        {
            // A killed process may linger as a zombie until reaped; it runs no more.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }
}
