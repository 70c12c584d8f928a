using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using LmsProxy.Keys;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Sharing;

/// <summary>Named keys through real sockets: hashed secrets, model lists, roles, what each key may read, legacy ApiKeys, failed-auth slowing.</summary>
public sealed class KeyAccessTests
{
    private const string Qwen = "qwen/qwen3-8b";
    private const string Gemma = "google/gemma-3-1b";
    private const string AliceSecret = "alice-secret-0123456789";
    private const string BobSecret = "bob-secret-0123456789ab";
    private const string OpsSecret = "ops-secret-0123456789ab";
    private const string LegacySecret = "legacy-key-0123456789";

    private static Task<GateEnvironment> StartAsync(IDictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            // Alice's secret is only in the file as its hash.
            ["LmsProxy:Keys:alice:KeyHash"] = KeyRegistry.HashOf(AliceSecret),
            ["LmsProxy:Keys:alice:Models:0"] = "qwen/*",
            ["LmsProxy:Keys:alice:Models:1"] = "chat",
            ["LmsProxy:Keys:bob:Key"] = BobSecret,
            ["LmsProxy:Keys:ops:Key"] = OpsSecret,
            ["LmsProxy:Keys:ops:Role"] = "operator",
            ["LmsProxy:ApiKeys:0"] = LegacySecret,
            ["LmsProxy:Aliases:chat"] = Gemma,
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, string?>()) settings[k] = v;
        return GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20) }, settings);
    }

    private static HttpRequestMessage As(string secret, HttpMethod method, string path, HttpContent? content = null, bool action = false)
    {
        var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        if (action) request.Headers.Add("X-LmsProxy-Action", "1");
        return request;
    }

    [Fact(Timeout = 30000)]
    public async Task AHashedKey_GetsIn_ItsModelListIsEnforced_AndItsRecordCarriesItsNameNeverTheSecret()
    {
        await using var env = await StartAsync();

        using var allowed = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Post, "/v1/chat/completions", Json.Chat(Qwen)));
        using var alias = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Post, "/v1/chat/completions", Json.Chat("chat")));
        using var refused = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Post, "/v1/chat/completions", Json.Chat(Gemma)));
        using var anthropic = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Post, "/v1/messages",
            Json.Body($$"""{"model":"{{Gemma}}","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}""")));

        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        Assert.Equal(HttpStatusCode.OK, alias.StatusCode); // the alias is listed, though its target is not
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("model_not_allowed", await refused.ErrorCode());
        Assert.Contains("'alice' may not use 'google/gemma-3-1b'", await refused.ErrorMessage());
        Assert.Equal(HttpStatusCode.Forbidden, anthropic.StatusCode);
        var body = await anthropic.ReadJson();
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal("permission_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(2, env.Simulator.State.InferenceRequests); // the two allowed reached LM Studio, the refused ones did not

        using var activity = await env.Client.SendAsync(As(OpsSecret, HttpMethod.Get, "/activity"));
        var text = await activity.Content.ReadAsStringAsync();
        Assert.Contains("\"key\":\"alice\"", text);
        Assert.DoesNotContain("alice-secret", text);
        Assert.DoesNotContain(KeyRegistry.HashOf(AliceSecret), text);
        Assert.DoesNotContain(env.Proxy.Logs.Lines, l => l.Contains("alice-secret", StringComparison.Ordinal) || l.Contains(BobSecret, StringComparison.Ordinal));
    }

    [Fact(Timeout = 30000)]
    public async Task ModelsList_ShowsOnlyWhatTheKeyMayUse_AndALookupOfAnotherIs403()
    {
        await using var env = await StartAsync();

        using var alice = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Get, "/v1/models"));
        using var bob = await env.Client.SendAsync(As(BobSecret, HttpMethod.Get, "/v1/models"));
        using var lookup = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Get, "/v1/models/" + Uri.EscapeDataString(Gemma)));
        using var ownLookup = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Get, "/v1/models/" + Uri.EscapeDataString(Qwen)));

        var aliceIds = (await alice.ReadJson()).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        var bobIds = (await bob.ReadJson()).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.Equal(["chat", "qwen/qwen3-8b", "qwen/qwen3-8b-instruct"], aliceIds.Order(StringComparer.Ordinal));
        Assert.Contains(Gemma, bobIds);
        Assert.Contains("text-embedding-nomic-embed-text-v1.5", bobIds);
        Assert.Equal(HttpStatusCode.Forbidden, lookup.StatusCode);
        Assert.Equal("model_not_allowed", await lookup.ErrorCode());
        Assert.Equal(HttpStatusCode.OK, ownLookup.StatusCode);

        // LM Studio's own lists, filtered alike.
        using var native = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Get, "/api/v1/models"));
        using var v0 = await env.Client.SendAsync(As(AliceSecret, HttpMethod.Get, "/api/v0/models"));
        Assert.Equal(["qwen/qwen3-8b", "qwen/qwen3-8b-instruct"], (await native.ReadJson()).GetProperty("models").EnumerateArray().Select(m => m.GetProperty("key").GetString()).Order(StringComparer.Ordinal));
        Assert.Equal(["qwen/qwen3-8b", "qwen/qwen3-8b-instruct"], (await v0.ReadJson()).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).Order(StringComparer.Ordinal));
    }

    [Theory(Timeout = 30000)]
    [InlineData("/models/qwen%2Fqwen3-8b/load")]
    [InlineData("/models/qwen%2Fqwen3-8b/pin")]
    [InlineData("/activity/1/cancel")]
    [InlineData("/api/v1/models/load")]
    [InlineData("/api/v1/models/unload")]
    public async Task AnOperatorAction_WithAnInferenceKey_Gets403_AndDoesNothing(string path)
    {
        await using var env = await StartAsync();

        foreach (var secret in new[] { BobSecret, LegacySecret })
        {
            using var response = await env.Client.SendAsync(As(secret, HttpMethod.Post, path, Json.Body($$"""{"model":"{{Qwen}}","instance_id":"{{Qwen}}"}"""), action: true));

            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Equal("operator_required", await response.ErrorCode());
            Assert.Contains("Role operator", await response.ErrorMessage());
        }
        Assert.Equal(0, env.Simulator.State.TotalLoads);
        Assert.DoesNotContain(env.Proxy.Scheduler.Snapshot().Models, m => m.Pinned);
    }

    [Fact(Timeout = 30000)]
    public async Task AnOperatorKey_MayAct()
    {
        await using var env = await StartAsync();
        await Eventually.Until(() => env.Proxy.Refreshed && env.Proxy.Scheduler.Catalog.Resolve(Qwen) is not null);

        using var load = await env.Client.SendAsync(As(OpsSecret, HttpMethod.Post, "/models/" + Uri.EscapeDataString(Qwen) + "/load", action: true));

        Assert.Equal(HttpStatusCode.Accepted, load.StatusCode);
        await Eventually.Until(() => env.Proxy.IsLoaded(Qwen));
    }

    [Fact(Timeout = 30000)]
    public async Task AnInferenceKey_ReadsOnlyItsOwnActivityAndUsage_AnOperatorReadsEveryones_AndLegacyKeysKeepWorking()
    {
        await using var env = await StartAsync();
        using (await env.Client.SendAsync(As(BobSecret, HttpMethod.Post, "/v1/chat/completions", Json.Chat(Qwen)))) { }
        using (var legacy = await env.Client.SendAsync(As(LegacySecret, HttpMethod.Post, "/v1/chat/completions", Json.Chat(Qwen))))
        {
            Assert.Equal(HttpStatusCode.OK, legacy.StatusCode);
        }
        await Eventually.Until(async () => (await Names(env, OpsSecret, "/usage?by=key")).Count == 2);

        Assert.Equal(["bob"], await Names(env, BobSecret, "/usage?by=key"));
        Assert.Equal(["ApiKeys:0", "bob"], (await Names(env, OpsSecret, "/usage?by=key")).Order(StringComparer.Ordinal));
        using var bobActivity = await env.Client.SendAsync(As(BobSecret, HttpMethod.Get, "/activity"));
        var keys = (await bobActivity.ReadJson()).GetProperty("requests").EnumerateArray().Select(r => r.GetProperty("key").GetString()).Distinct().ToList();
        Assert.Equal(["bob"], keys);
        using var status = await env.Client.SendAsync(As(BobSecret, HttpMethod.Get, "/status"));
        Assert.Equal(["bob"], (await status.ReadJson()).GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("name").GetString()));
        using var metrics = await env.Client.SendAsync(As(OpsSecret, HttpMethod.Get, "/metrics"));
        var scraped = await metrics.Content.ReadAsStringAsync();
        Assert.Matches("lmsproxy_key_tokens_today\\{key=\"bob\"\\} [1-9]", scraped);
        Assert.Contains("lmsproxy_key_in_flight{key=\"ApiKeys:0\"} 0", scraped);
        Assert.DoesNotContain(BobSecret, scraped);
    }

    private static async Task<List<string?>> Names(GateEnvironment env, string secret, string path)
    {
        using var response = await env.Client.SendAsync(As(secret, HttpMethod.Get, path));
        return [.. (await response.ReadJson()).GetProperty("usage").EnumerateArray().Select(e => e.GetProperty("name").GetString())];
    }

    [Fact(Timeout = 30000)]
    public async Task RepeatedFailedAuthentication_FromOneAddress_IsCountedAndSlowed_AndAValidKeyIsNot()
    {
        await using var env = await StartAsync();
        var failures = env.Proxy.Services.GetService(typeof(AuthFailures)) as AuthFailures;
        var took = new List<TimeSpan>();

        for (var i = 0; i < AuthFailures.FreeFailures + 3; i++)
        {
            var watch = Stopwatch.StartNew();
            using var response = await env.Client.SendAsync(As("guess-" + i + "-0123456789", HttpMethod.Get, "/v1/models"));
            took.Add(watch.Elapsed);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
        var valid = Stopwatch.StartNew();
        using var ok = await env.Client.SendAsync(As(BobSecret, HttpMethod.Get, "/v1/models"));

        Assert.Equal(AuthFailures.FreeFailures + 3, failures!.CountFor(IPAddress.Loopback));
        Assert.True(took[^1] >= TimeSpan.FromMilliseconds(280), $"the eighth failure took {took[^1].TotalMilliseconds:0} ms");
        Assert.True(took[0] < TimeSpan.FromMilliseconds(250), $"the first failure took {took[0].TotalMilliseconds:0} ms");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.True(valid.Elapsed < TimeSpan.FromMilliseconds(250));
        Assert.Contains(env.Proxy.Logs.Lines, l => l.Contains("Repeated failed authentication from 127.0.0.1", StringComparison.Ordinal));
    }
}
