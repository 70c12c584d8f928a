using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Sharing;

/// <summary>
/// The proxy holds the queue instead of LM Studio (parallel 1, 200 ms answers, real sockets): an interactive key's
/// request overtakes a batch key's burst, a small key is not stuck behind a big one of its class, and with
/// QueueOrder arrival the same request waits its turn behind the burst.
/// </summary>
public sealed class FairQueueTests
{
    private const string Qwen = "qwen/qwen3-8b";
    private static readonly TimeSpan Answer = TimeSpan.FromMilliseconds(200);

    private static Task<GateEnvironment> StartAsync(string order = "fair") => GateEnvironment.StartAsync(
        new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), ResponseDelay = Answer, Parallel = 1 },
        new Dictionary<string, string?>
        {
            ["LmsProxy:QueueOrder"] = order,
            ["LmsProxy:Keys:nightly:Key"] = "nightly-secret-0123456789",
            ["LmsProxy:Keys:nightly:Priority"] = "batch",
            ["LmsProxy:Keys:alice:Key"] = "alice-secret-0123456789",
            ["LmsProxy:Keys:alice:Priority"] = "interactive",
            ["LmsProxy:Keys:agent:Key"] = "agent-secret-0123456789",
            ["LmsProxy:Keys:bob:Key"] = "bob-secret-0123456789ab",
        });

    private static async Task<(HttpStatusCode Status, long QueueMs, DateTime Done)> SendAsync(HttpClient client, string secret)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat(Qwen) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        using var response = await client.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        var queued = response.Headers.TryGetValues("X-LmsProxy-Queue-Ms", out var values) ? long.Parse(values.Single(), CultureInfo.InvariantCulture) : 0;
        return (response.StatusCode, queued, DateTime.UtcNow);
    }

    private static async Task<List<Task<(HttpStatusCode Status, long QueueMs, DateTime Done)>>> BurstAsync(GateEnvironment env, string secret, int count, int queuedBefore = 0)
    {
        var burst = Enumerable.Range(0, count).Select(_ => SendAsync(env.Client, secret)).ToList();
        // All but the one in LM Studio's slot wait in the proxy before anyone else sends.
        await Eventually.Until(() => Queued(env) == queuedBefore + count - (queuedBefore == 0 ? 1 : 0));
        return burst;
    }

    private static int Queued(GateEnvironment env) => env.Proxy.Scheduler.Snapshot().Hosts.SelectMany(h => h.Instances).Sum(i => i.InFlight) - 1;

    [Fact(Timeout = 30000)]
    public async Task AnInteractiveRequest_Overtakes_ABatchBurst_AndLmStudioNeverQueues()
    {
        await using var env = await StartAsync();
        await SendAsync(env.Client, "nightly-secret-0123456789"); // loaded
        var burst = await BurstAsync(env, "nightly-secret-0123456789", 6);

        var interactive = await SendAsync(env.Client, "alice-secret-0123456789");
        var batch = await Task.WhenAll(burst);

        Assert.Equal(HttpStatusCode.OK, interactive.Status);
        Assert.True(interactive.QueueMs < 2 * Answer.TotalMilliseconds, $"the interactive request waited {interactive.QueueMs} ms behind a burst");
        Assert.True(batch.Count(b => b.Done > interactive.Done) >= 4, "the interactive request did not go ahead of the burst");
        Assert.All(batch, b => Assert.Equal(HttpStatusCode.OK, b.Status));
        Assert.Equal(1, env.Simulator.State.Instances().Single().PeakQueued);
    }

    [Fact(Timeout = 30000)]
    public async Task WithArrivalOrder_TheSameRequest_WaitsBehindTheWholeBurst()
    {
        await using var env = await StartAsync("arrival");
        await SendAsync(env.Client, "nightly-secret-0123456789");
        var burst = await BurstAsync(env, "nightly-secret-0123456789", 6);

        var interactive = await SendAsync(env.Client, "alice-secret-0123456789");
        var batch = await Task.WhenAll(burst);

        Assert.True(interactive.QueueMs >= 4 * Answer.TotalMilliseconds, $"in arrival order it waited only {interactive.QueueMs} ms");
        Assert.All(batch, b => Assert.True(b.Done <= interactive.Done));
    }

    [Fact(Timeout = 30000)]
    public async Task WithinOnePriority_ASmallKey_IsNotStuckBehindABigKeysBurst()
    {
        await using var env = await StartAsync();
        await SendAsync(env.Client, "agent-secret-0123456789");
        var big = await BurstAsync(env, "agent-secret-0123456789", 8);

        var small = await Task.WhenAll(SendAsync(env.Client, "bob-secret-0123456789ab"), SendAsync(env.Client, "bob-secret-0123456789ab"));
        var agent = await Task.WhenAll(big);

        // Equal shares: bob's two alternate with the agent's turns, instead of waiting for all eight.
        Assert.All(small, s => Assert.True(s.QueueMs < 5 * Answer.TotalMilliseconds, $"bob waited {s.QueueMs} ms"));
        Assert.True(agent.Count(a => a.Done > small.Max(s => s.Done)) >= 4, "the small key waited behind the big key's burst");
    }

    [Fact(Timeout = 30000)]
    public async Task AWaitForASlot_IsBoundedByTheHoldDeadline_With503QueueTimeoutAndRetryAfter_Never429()
    {
        await using var env = await GateEnvironment.StartAsync(
            new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), ResponseDelay = TimeSpan.FromSeconds(2), Parallel = 1 },
            new Dictionary<string, string?> { ["LmsProxy:HoldTimeout"] = "00:00:01", ["LmsProxy:Preload:0"] = Qwen });
        await Eventually.Until(() => env.Proxy.IsLoaded(Qwen));

        var first = env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        await Eventually.Until(() => env.Simulator.State.Instances().Single().Queued == 1);
        using var second = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, second.StatusCode);
        Assert.Equal("queue_timeout", await second.ErrorCode());
        Assert.Contains("No slot of 'qwen/qwen3-8b' came free", await second.ErrorMessage());
        Assert.True(second.Headers.RetryAfter?.Delta > TimeSpan.Zero);
        using var answered = await first;
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        Assert.Equal(1, env.Simulator.State.Instances().Single().PeakQueued);
    }
}
