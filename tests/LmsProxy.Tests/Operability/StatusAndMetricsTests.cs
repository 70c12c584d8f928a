using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Operability;

/// <summary>/status, /metrics and the request log tell an operator what happened: cold request, hold, load, release.</summary>
[Collection(MetricsCollection.Name)]
public sealed class StatusAndMetricsTests
{
    [Fact(Timeout = 30000)]
    public async Task StatusAndMetrics_FollowAColdRequestThroughHoldLoadAndRelease()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(1) });
        // As in normal operation, the start-up read of LM Studio's model list is done (metric labels name known models).
        await Eventually.Until(() => env.Proxy.Refreshed);

        var cold = env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        System.Text.Json.JsonElement during = default;
        await Eventually.Until(async () =>
        {
            var models = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("models").EnumerateArray();
            during = models.FirstOrDefault(m => m.GetProperty("key").GetString() == "qwen/qwen3-8b");
            return during.ValueKind != System.Text.Json.JsonValueKind.Undefined && during.GetProperty("held").GetInt32() == 1 && during.GetProperty("loading").GetBoolean();
        });
        using var response = await cold;
        var status = await (await env.Client.GetAsync("/status")).ReadJson();
        var after = Model(status, "qwen/qwen3-8b");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(during.GetProperty("loading").GetBoolean());
        Assert.Equal(1, during.GetProperty("held").GetInt32());
        Assert.False(during.GetProperty("loaded").GetBoolean());
        Assert.True(after.GetProperty("loaded").GetBoolean());
        Assert.False(after.GetProperty("loading").GetBoolean());
        Assert.Equal(0, after.GetProperty("held").GetInt32());
        Assert.InRange(after.GetProperty("lastLoadMs").GetDouble(), 900, 10000);
        Assert.True(status.GetProperty("upstream").GetProperty("reachable").GetBoolean());
        Assert.Equal("lms", status.GetProperty("loader").GetProperty("name").GetString());
        Assert.Equal(env.Lms.Path, status.GetProperty("loader").GetProperty("lmsPath").GetString());

        var metrics = await MetricsAsync(env.Client, "lmsproxy_model_loads_total");
        Assert.Equal(1, Value(metrics, "lmsproxy_model_loads_total", "model=\"qwen/qwen3-8b\"", "result=\"success\""));
        Assert.Equal(1, Value(metrics, "lmsproxy_requests_total", "model=\"qwen/qwen3-8b\"", "outcome=\"forwarded\""));
        Assert.Equal(1, Value(metrics, "lmsproxy_hold_duration_seconds_count", "outcome=\"ready\""));
        Assert.Equal(0, Value(metrics, "lmsproxy_hold_duration_seconds_bucket", "outcome=\"ready\"", "le=\"0.5\""));
        Assert.Equal(1, Value(metrics, "lmsproxy_hold_duration_seconds_bucket", "outcome=\"ready\"", "le=\"5\""));
        Assert.Equal(0, Value(metrics, "lmsproxy_requests_held", "model=\"qwen/qwen3-8b\""));
        Assert.Equal(1, Value(metrics, "lmsproxy_instance_state", "model=\"qwen/qwen3-8b\"", "host=\"default\"", "state=\"idle\""));
        Assert.True(Value(metrics, "lmsproxy_instance_estimated_bytes", "model=\"qwen/qwen3-8b\"", "host=\"default\"") > 5e9);
        Assert.Equal(0, Value(metrics, "lmsproxy_instance_pinned", "model=\"qwen/qwen3-8b\""));
        Assert.Equal(1, Value(metrics, "lmsproxy_host_up", "host=\"default\""));
    }

    [Fact(Timeout = 30000)]
    public async Task AbsorbedNotLoadedAnswers_AreCounted()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:RefreshInterval"] = "01:00:00" });
        using var warm = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        env.Simulator.State.Evict("qwen/qwen3-8b");
        using var resent = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        var metrics = await MetricsAsync(env.Client, "lmsproxy_upstream_not_loaded_total");

        Assert.Equal(HttpStatusCode.OK, resent.StatusCode);
        Assert.Equal(1, Value(metrics, "lmsproxy_upstream_not_loaded_total", "model=\"qwen/qwen3-8b\""));
        Assert.Equal(2, Value(metrics, "lmsproxy_model_loads_total", "model=\"qwen/qwen3-8b\"", "result=\"success\""));
    }

    [Fact(Timeout = 30000)]
    public async Task RequestLog_CarriesModelHoldAndStatus_AndNoSecret()
    {
        await using var env = await GateEnvironment.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("qwen/qwen3-8b") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-lm-TOPSECRET42");
        request.Headers.Add("x-api-key", "sk-ant-TOPSECRET43");

        using var response = await env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var line = Assert.Single(env.Proxy.Logs.Lines, l => l.Contains("POST /v1/chat/completions", StringComparison.Ordinal));
        Assert.Matches(@"model=qwen/qwen3-8b status=200 hold_ms=[1-9]\d* total_ms=", line);
        Assert.Contains(env.Proxy.Logs.Lines, l => Regex.IsMatch(l, @"Loaded qwen/qwen3-8b on default in \d+ ms"));
        Assert.DoesNotContain(env.Proxy.Logs.Lines, l => l.Contains("TOPSECRET", StringComparison.Ordinal));
    }

    [Fact(Timeout = 30000)]
    public async Task EncodedNewlineInThePath_CannotForgeALogLine()
    {
        // Pass-through requests are logged at Debug level (nothing is spent on logs for them by default).
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["Logging:LogLevel:LmsProxy.Requests"] = "Debug" });

        using var response = await env.Client.GetAsync("/api/v0/models%0Ainfo:%20forged");

        Assert.DoesNotContain(env.Proxy.Logs.Lines, l => l.Contains("\ninfo: forged", StringComparison.Ordinal));
        Assert.Contains(env.Proxy.Logs.Lines, l => l.Contains("GET /api/v0/models%0Ainfo:%20forged", StringComparison.Ordinal));
    }

    [Fact(Timeout = 30000)]
    public async Task FailedLoad_ShowsInStatus_WithItsError()
    {
        await using var env = await GateEnvironment.StartAsync(lmsMisbehaviour: "FAIL_ON=load");
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));

        var model = Model(await (await env.Client.GetAsync("/status")).ReadJson(), "google/gemma-3-1b");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("simulated failure of lms load", model.GetProperty("lastError").GetString());
        Assert.NotEqual(System.Text.Json.JsonValueKind.Null, model.GetProperty("lastErrorAt").ValueKind);
    }

    private static System.Text.Json.JsonElement Model(System.Text.Json.JsonElement status, string key) =>
        status.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("key").GetString() == key);

    /// <summary>Scrapes until a series appears (the exporter caches a scrape for a moment).</summary>
    private static async Task<string> MetricsAsync(HttpClient client, string series)
    {
        for (var i = 0; ; i++)
        {
            var text = await client.GetStringAsync("/metrics");
            if (text.Contains(series, StringComparison.Ordinal) || i > 50) return text;
            await Task.Delay(100);
        }
    }

    private static double Value(string metrics, string name, params string[] labels)
    {
        var line = metrics.Split('\n').Single(l => l.StartsWith(name + "{", StringComparison.Ordinal) && labels.All(label => l.Contains(label, StringComparison.Ordinal)));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
