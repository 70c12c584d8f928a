using System.Net;
using System.Net.Http.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Fidelity;

/// <summary>
/// Issue 17 §5 (addendum F17, F20): /v1/decisions and /v1/systemone name a model and are gated like the other
/// inference endpoints; an unknown route is "unsupported" whether LM Studio answers 200 "Unexpected endpoint" or
/// Bionic answers 404 or 415.
/// </summary>
public sealed class RoutesFidelityTests
{
    private const string Qwen = "qwen/qwen3-8b";

    [Theory(Timeout = 30000)]
    [InlineData("/v1/decisions", "{\"model\":\"qwen/qwen3-8b\",\"input\":\"The sky is green.\",\"questions\":[{\"type\":\"predicate\",\"question\":\"Is it true?\"}]}")]
    [InlineData("/v1/systemone", "{\"model\":\"qwen/qwen3-8b\",\"state\":{\"sky\":\"green\"},\"questions\":{\"true\":{\"type\":\"noul\"}}}")]
    public async Task DecisionEndpoints_LoadTheirModelFirst_LikeEveryInferenceEndpoint(string path, string body)
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100) });

        using var response = await env.Client.PostAsync(path, Json.Body(body));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True((await response.ReadJson()).TryGetProperty("answers", out _));
        Assert.Equal(1, env.Simulator.State.LoadCount(Qwen));
        Assert.Equal(0, env.Simulator.State.NotLoadedAnswers);
    }

    [Theory(Timeout = 30000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnUnknownRoute_IsUnsupported_On_LmStudio_And_OnBionic(bool bionic)
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { Bionic = bionic });

        using var get = await env.Client.GetAsync("/api/health");
        using var form = new MultipartFormDataContent { { new ByteArrayContent([1, 2, 3]), "file", "a.wav" } };
        using var multipart = await env.Client.PostAsync("/v1/audio/transcriptions", form);

        foreach (var response in new[] { get, multipart })
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("unsupported_endpoint", await response.ErrorCode());
        }
    }

    [Fact(Timeout = 30000)]
    public async Task Simulator_Bionic_Answers404And415ForUnknownRoutes_AndNamesItselfInItsGreeting()
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { Bionic = true });
        using var http = new HttpClient();

        using var unknown = await http.GetAsync(new Uri(sim.Url, "/api/health"));
        using var form = new MultipartFormDataContent { { new ByteArrayContent([1]), "file", "a.wav" } };
        using var multipart = await http.PostAsync(new Uri(sim.Url, "/v1/audio/transcriptions"), form);
        var greeting = await http.GetFromJsonAsync<System.Text.Json.Nodes.JsonObject>(new Uri(sim.Url, "/lmstudio-greeting"));

        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, multipart.StatusCode);
        Assert.True((bool)greeting!["lmstudio"]!);
        Assert.Equal("bionic", (string?)greeting["app"]);
    }
}
