using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Activity;

/// <summary>/metrics gains what the record measures: time to first token and queue time by model and host, tokens by model and kind.</summary>
[Collection(MetricsCollection.Name)]
public sealed class ActivityMetricsTests
{
    [Fact(Timeout = 30000)]
    public async Task Metrics_CountTimeToFirstTokenQueueTimeAndTokens()
    {
        // Loads and first tokens of 1.5 s, so that a warm answer is told from them by a 1 s bucket even on a busy machine
        // (with 300 ms and a 250 ms bucket, a warm answer once took longer in CI).
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1.5), FirstTokenDelay = TimeSpan.FromSeconds(1.5) });
        await Eventually.Until(() => env.Proxy.Refreshed);
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))) { } // cold: waits for the load
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))) { } // warm
        using (var stream = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b", stream: true))) await stream.Content.ReadAsStringAsync();
        await ActivityTests.LastDoneAsync(env.Client, "/v1/chat/completions");
        await Eventually.Until(async () => (await ActivityTests.ActivityAsync(env.Client)).Count(r => r.GetProperty("state").GetString() == "done") == 3);

        var metrics = await env.Client.GetStringAsync("/metrics");

        const string Labels = "model=\"qwen/qwen3-8b\"";
        Assert.Equal(3, Value(metrics, "lmsproxy_request_time_to_first_token_seconds_count", Labels, "host=\"default\""));
        // Only the warm whole body's first byte came within 1 s: the cold one waited for the load, the stream for the simulator's first token.
        Assert.Equal(1, Value(metrics, "lmsproxy_request_time_to_first_token_seconds_bucket", Labels, "le=\"1\""));
        Assert.Equal(3, Value(metrics, "lmsproxy_request_queue_time_seconds_count", Labels, "host=\"default\""));
        // The cold one waited for its load (more than 100 ms), the warm ones not at all.
        Assert.Equal(2, Value(metrics, "lmsproxy_request_queue_time_seconds_bucket", Labels, "le=\"0.1\""));
        // Usage of the two whole bodies (5 and 5 each); the stream sent none, its 5 content events are counted.
        Assert.Equal(10, Value(metrics, "lmsproxy_tokens_total", Labels, "kind=\"prompt\""));
        Assert.Equal(15, Value(metrics, "lmsproxy_tokens_total", Labels, "kind=\"completion\""));
    }

    private static double Value(string metrics, string name, params string[] labels)
    {
        var line = metrics.Split('\n').Single(l => l.StartsWith(name + "{", StringComparison.Ordinal) && labels.All(label => l.Contains(label, StringComparison.Ordinal)));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
