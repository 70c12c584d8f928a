using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Sharing;

/// <summary>Per-key limits through real sockets: 429s with Retry-After and when they reset, MaxConcurrent waiting, totals across a restart.</summary>
public sealed class KeyLimitTests : IDisposable
{
    private const string Qwen = "qwen/qwen3-8b";
    private const string Secret = "team-secret-0123456789";
    private readonly string _folder = Directory.CreateTempSubdirectory("lmsproxy-keys-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static Task<GateEnvironment> StartAsync(TimeSpan responseDelay, params (string Key, string Value)[] limits)
    {
        var settings = new Dictionary<string, string?> { ["LmsProxy:Keys:team:Key"] = Secret };
        foreach (var (k, v) in limits) settings[$"LmsProxy:Keys:team:{k}"] = v;
        return GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), ResponseDelay = responseDelay }, settings);
    }

    private static HttpRequestMessage Chat(string path = "/v1/chat/completions")
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = path == "/v1/messages"
                ? Json.Body($$"""{"model":"{{Qwen}}","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}""")
                : Json.Chat(Qwen),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Secret);
        return request;
    }

    private static int RetryAfterSeconds(HttpResponseMessage response) =>
        int.Parse(response.Headers.GetValues("Retry-After").Single(), CultureInfo.InvariantCulture);

    [Fact(Timeout = 30000)]
    public async Task RequestsPerMinute_Spent_Gets429InOpenAisAndAnthropicsShape_WithRetryAfterAndTheReset()
    {
        await using var env = await StartAsync(TimeSpan.Zero, ("RequestsPerMinute", "2"));

        using var first = await env.Client.SendAsync(Chat());
        using var second = await env.Client.SendAsync(Chat());
        using var third = await env.Client.SendAsync(Chat());
        using var anthropic = await env.Client.SendAsync(Chat("/v1/messages"));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("rate_limit_exceeded", await third.ErrorCode());
        var message = await third.ErrorMessage();
        Assert.Contains("RequestsPerMinute", message);
        Assert.Contains("It resets at", message);
        Assert.InRange(RetryAfterSeconds(third), 55, 60);
        Assert.Equal(HttpStatusCode.TooManyRequests, anthropic.StatusCode);
        var body = await anthropic.ReadJson();
        Assert.Equal("rate_limit_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("RequestsPerMinute", body.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(2, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task TokensPerDay_Spent_Gets429UntilMidnightUtc()
    {
        await using var env = await StartAsync(TimeSpan.Zero, ("TokensPerDay", "5"));

        using var first = await env.Client.SendAsync(Chat()); // the limit is checked before a request: this one spends it
        await Eventually.Until(() => env.Proxy.Services.GetService(typeof(LmsProxy.Activity.ActivityRecorder)) is LmsProxy.Activity.ActivityRecorder r
            && r.Usage.Today("key", "team", DateTimeOffset.UtcNow).Tokens >= 5);
        using var second = await env.Client.SendAsync(Chat());

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.Equal("rate_limit_exceeded", await second.ErrorCode());
        Assert.Contains("TokensPerDay", await second.ErrorMessage());
        Assert.Contains("00:00:00 UTC", await second.ErrorMessage());
        var untilMidnight = DateTime.UtcNow.Date.AddDays(1) - DateTime.UtcNow;
        Assert.InRange(RetryAfterSeconds(second), untilMidnight.TotalSeconds - 5, untilMidnight.TotalSeconds + 5);
    }

    [Fact(Timeout = 30000)]
    public async Task GpuSecondsPerDay_Spent_Gets429()
    {
        await using var env = await StartAsync(TimeSpan.FromMilliseconds(120), ("GpuSecondsPerDay", "0.1"));

        using var first = await env.Client.SendAsync(Chat());
        await Eventually.Until(async () =>
        {
            using var again = await env.Client.SendAsync(Chat());
            return again.StatusCode == HttpStatusCode.TooManyRequests && (await again.ErrorMessage())!.Contains("GpuSecondsPerDay", StringComparison.Ordinal);
        });

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
    }

    [Fact(Timeout = 30000)]
    public async Task MaxConcurrent_Reached_TheRequestWaits_ItIsNeverRefused()
    {
        await using var env = await StartAsync(TimeSpan.FromMilliseconds(300), ("MaxConcurrent", "1"));
        using (await env.Client.SendAsync(Chat())) { } // loaded

        var watch = Stopwatch.StartNew();
        var responses = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => env.Client.SendAsync(Chat())));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(850), $"three answers of 300 ms one at a time took {watch.Elapsed.TotalMilliseconds:0} ms");
        Assert.Equal(1, env.Simulator.State.Instances().Single().PeakQueued);
        foreach (var r in responses) r.Dispose();
    }

    [Fact(Timeout = 60000)]
    public async Task ALongQueue_IsNeverA429_EveryRequestIsServedInTurn()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), ResponseDelay = TimeSpan.FromMilliseconds(50), Parallel = 1 },
            new Dictionary<string, string?> { ["LmsProxy:Keys:team:Key"] = Secret, ["LmsProxy:Keys:team:RequestsPerMinute"] = "1000" });

        var responses = await Task.WhenAll(Enumerable.Range(0, 24).Select(_ => env.Client.SendAsync(Chat())));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        // The proxy held the queue: LM Studio never had more than its one slot's worth.
        Assert.Equal(1, env.Simulator.State.Instances().Single().PeakQueued);
        foreach (var r in responses) r.Dispose();
    }

    [Fact(Timeout = 60000)]
    public async Task TotalsPerKey_AreIdenticalAfterARestart_AndASpentLimitStaysSpent()
    {
        var store = Path.Combine(_folder, "lmsproxy.db");
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), Jit = true });
        var settings = new Dictionary<string, string?>
        {
            ["LmsProxy:State:Path"] = store,
            ["LmsProxy:Keys:team:Key"] = Secret,
            ["LmsProxy:Keys:team:TokensPerDay"] = "30",
            ["LmsProxy:Keys:ops:Key"] = "ops-secret-0123456789ab",
            ["LmsProxy:Keys:ops:Role"] = "operator",
        };
        string before;
        await using (var first = new ProxyApp(sim.Url, settings))
        {
            using var client = first.Client();
            HttpStatusCode status;
            do
            {
                using var response = await client.SendAsync(Chat());
                status = response.StatusCode;
            }
            while (status == HttpStatusCode.OK);
            Assert.Equal(HttpStatusCode.TooManyRequests, status);
            before = await UsageByKey(client);
        }
        await using var second = new ProxyApp(sim.Url, settings);
        using var again = second.Client();

        Assert.Equal(before, await UsageByKey(again));
        Assert.Contains("\"name\":\"team\"", before);
        using var stillSpent = await again.SendAsync(Chat());
        Assert.Equal(HttpStatusCode.TooManyRequests, stillSpent.StatusCode);
    }

    private static async Task<string> UsageByKey(HttpClient client)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/usage?by=key");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "ops-secret-0123456789ab");
        using var response = await client.SendAsync(request);
        return await response.Content.ReadAsStringAsync();
    }
}
