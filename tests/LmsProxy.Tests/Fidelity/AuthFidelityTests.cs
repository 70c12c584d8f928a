using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Fidelity;

/// <summary>
/// Issue 17 §3 (addendum F6, F16): LM Studio with "Require Authentication" on. A missing or refused token is reported
/// by host name as a 502 upstream_auth_failed naming the setting, on requests, /readyz and /status, never as a 200
/// with an error body; the lms loader is never chosen for a remote host that needs a token.
/// </summary>
public sealed class AuthFidelityTests
{
    // LM Studio's token form: sk-lm-<8>:<20>, with a colon (F16).
    private const string Token = "sk-lm-abcd1234:abcdefghij0123456789";
    private const string Qwen = "qwen/qwen3-8b";

    private static SimulatorOptions AuthOn() => new() { LoadTime = TimeSpan.FromMilliseconds(50), RequireApiToken = Token };

    [Theory(Timeout = 30000)]
    [InlineData(null, "the proxy has none")]
    [InlineData("sk-lm-wrong000:00000000000000000000", "refused the proxy's token")]
    public async Task AMissingOrRefusedToken_IsA502NamingTheHostAndTheSetting_NeverA200(string? token, string what)
    {
        await using var env = await GateEnvironment.StartAsync(AuthOn(), new Dictionary<string, string?> { ["LmsProxy:UpstreamApiKey"] = token });

        using var chat = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var stream = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen, stream: true));

        foreach (var response in new[] { chat, stream })
        {
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            Assert.Equal("upstream_auth_failed", await response.ErrorCode());
            var message = await response.ErrorMessage();
            Assert.Contains("host 'default'", message);
            Assert.Contains(what, message);
            Assert.Contains("LmsProxy:UpstreamApiKey", message);
        }
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Fact(Timeout = 30000)]
    public async Task ReadyzAndStatus_SayTheTokenIsMissing_AndWhichSettingHoldsIt()
    {
        await using var sim = await SimulatorApp.StartAsync(AuthOn());
        await using var named = new ProxyApp(sim.Url, new Dictionary<string, string?>
        {
            ["LmsProxy:Hosts:gpu1:Url"] = sim.Url.GetLeftPart(UriPartial.Authority),
            ["LmsProxy:Hosts:gpu1:Loader"] = "rest",
        });
        using var client = named.Client();

        using var ready = await client.GetAsync("/readyz");
        var readyBody = await ready.ReadJson();
        using var status = await client.GetAsync("/status");
        var statusBody = await status.ReadJson();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("LmsProxy:Hosts:gpu1:ApiKey", readyBody.GetProperty("reason").GetString());
        Assert.Contains("host 'gpu1'", readyBody.GetProperty("reason").GetString());
        Assert.False(statusBody.GetProperty("upstream").GetProperty("reachable").GetBoolean());
        Assert.Contains("LmsProxy:Hosts:gpu1:ApiKey", statusBody.GetProperty("upstream").GetProperty("detail").GetString());
        await Eventually.Until(async () =>
        {
            using var again = await client.GetAsync("/status");
            return (await again.ReadJson()).GetProperty("hosts")[0].GetProperty("lastError").GetString()?.Contains("LmsProxy:Hosts:gpu1:ApiKey") == true;
        });
    }

    [Fact(Timeout = 30000)]
    public async Task TheRightToken_WithItsColon_IsSentAndRequestsAreServed()
    {
        await using var env = await GateEnvironment.StartAsync(AuthOn(), new Dictionary<string, string?> { ["LmsProxy:UpstreamApiKey"] = Token, ["LmsProxy:Loader"] = "rest" });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var ready = await env.Client.GetAsync("/readyz");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal(1, env.Simulator.State.LoadCount(Qwen));
        Assert.Equal(0, env.Simulator.State.AuthRefusals);
    }

    [Fact(Timeout = 30000)]
    public async Task ARemoteHostWithAToken_IsLoadedThroughRest_EvenWhenLmsIsAskedFor()
    {
        using var lms = new FakeLms(new Uri("http://127.0.0.1:9"));
        // 192.0.2.0/24 is TEST-NET-1: never a real host; only the loader choice is looked at.
        await using var proxy = new ProxyApp(new Uri("http://192.0.2.10:1234"), new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "lms",
            ["LmsProxy:Lms:Path"] = lms.Path,
            ["LmsProxy:UpstreamApiKey"] = Token,
        });

        var loader = proxy.Scheduler.Hosts[0].Loader;

        Assert.Equal("rest", loader.Name);
        Assert.Contains("lms --host cannot send", loader.Reason);
    }

    // ---- The simulator on its own --------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task Simulator_WithAuthOn_Answers401OnApiV1_And200UnexpectedEndpointOnV1()
    {
        await using var sim = await SimulatorApp.StartAsync(AuthOn());
        using var http = new HttpClient();

        using var none = await http.GetAsync(new Uri(sim.Url, "/api/v1/models"));
        using var wrongRequest = new HttpRequestMessage(HttpMethod.Get, new Uri(sim.Url, "/api/v1/models")) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "sk-lm-nope0000:00000000000000000000") } };
        using var wrong = await http.SendAsync(wrongRequest);
        using var chat = await http.PostAsJsonAsync(new Uri(sim.Url, "/v1/chat/completions"), new { model = Qwen, messages = new[] { new { role = "user", content = "hi" } } });
        using var rightRequest = new HttpRequestMessage(HttpMethod.Get, new Uri(sim.Url, "/api/v1/models")) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", Token) } };
        using var right = await http.SendAsync(rightRequest);
        using var greeting = await http.GetAsync(new Uri(sim.Url, "/lmstudio-greeting"));

        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("invalid_api_key", (string?)JsonNode.Parse(await none.Content.ReadAsStringAsync())!["error"]!["code"]);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
        Assert.Equal("{\"error\":\"Unexpected endpoint or method. (POST /v1/chat/completions)\"}", await chat.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, right.StatusCode);
        Assert.Equal(HttpStatusCode.OK, greeting.StatusCode);
    }
}
