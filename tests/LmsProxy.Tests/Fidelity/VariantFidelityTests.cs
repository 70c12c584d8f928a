using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Fidelity;

/// <summary>
/// Issue 17 §1 (addendum F3, F13, F15): a multi-variant model, google/gemma-4-31b with @4bit (selected) and @8bit.
/// LM Studio loads only the base key, and loads the selected variant; the proxy serves the selected variant with one
/// load, refuses another at once, never serves other weights than asked, and does not load a hidden instance twice.
/// </summary>
public sealed class VariantFidelityTests
{
    private const string Gemma = "google/gemma-4-31b";

    private static SimulatorOptions Options(Action<SimulatorOptions>? tweak = null)
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(300) };
        options.Models.Add(SimModel.WithVariants(Gemma, 3_000_000_000));
        tweak?.Invoke(options);
        return options;
    }

    [Theory(Timeout = 30000)]
    [InlineData("lms")]
    [InlineData("rest")]
    public async Task TheSelectedVariant_IsServed_WithOneLoadOfTheBaseKey(string loader)
    {
        await using var env = await GateEnvironment.StartAsync(Options(), new Dictionary<string, string?> { ["LmsProxy:Loader"] = loader });

        using var first = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma + "@4bit"));
        using var second = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma + "@4bit"));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(1, env.Simulator.State.LoadCount(Gemma));
        Assert.Equal([Gemma + "@4bit"], env.Simulator.State.Instances().Select(i => i.Variant));
        // Never a variant key to lms (it answers "Model not found").
        Assert.DoesNotContain(env.Lms.Calls, c => c.Contains('@'));
    }

    [Fact(Timeout = 30000)]
    public async Task AVariantThatIsNotSelected_GetsAClearErrorAtOnce_AndNothingIsLoaded()
    {
        await using var env = await GateEnvironment.StartAsync(Options());
        await Eventually.Until(() => env.Proxy.Refreshed);
        var started = Stopwatch.GetTimestamp();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma + "@8bit"));

        Assert.True(Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(2), $"took {Stopwatch.GetElapsedTime(started)}");
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Equal("model_variant_not_selected", await response.ErrorCode());
        var message = await response.ErrorMessage();
        Assert.Contains(Gemma + "@8bit", message);
        Assert.Contains(Gemma + "@4bit is selected", message);
        Assert.Contains("select " + Gemma + "@8bit", message, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, env.Simulator.State.TotalLoads);
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task AVariantThatIsNotTheLoadedOne_IsRefused_EvenOnceItIsSelected()
    {
        await using var env = await GateEnvironment.StartAsync(Options());
        using var loaded = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma));
        // The user selects @8bit in LM Studio; the loaded instance still holds @4bit's weights.
        using (await new HttpClient().PostAsync(new Uri(env.Simulator.Url, $"/_sim/select-variant?variant={Uri.EscapeDataString(Gemma + "@8bit")}"), null)) { }
        await env.Proxy.Scheduler.RefreshAllAsync(CancellationToken.None);

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma + "@8bit"));

        Assert.Equal(HttpStatusCode.OK, loaded.StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Contains(Gemma + "@4bit is loaded", await response.ErrorMessage());
        Assert.Equal(1, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task TheSelectedVariantFlipsDuringTheLoad_TheRequestIsRefused_NeverServedWithTheOtherWeights()
    {
        await using var env = await GateEnvironment.StartAsync(Options(o => o.FlipSelectedVariantOnLoad = true));
        await Eventually.Until(() => env.Proxy.Refreshed);

        using var asked4 = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma + "@4bit"));
        using var asked8 = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma + "@8bit"));

        // LM Studio loaded @8bit: the request for @4bit is told so, and the one for @8bit is served by that load.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, asked4.StatusCode);
        var message = await asked4.ErrorMessage();
        Assert.Contains("loaded 'google/gemma-4-31b' as " + Gemma + "@8bit", message);
        Assert.Contains("not as " + Gemma + "@4bit", message);
        Assert.Equal(HttpStatusCode.OK, asked8.StatusCode);
        Assert.Equal(1, env.Simulator.State.LoadCount(Gemma));
        Assert.Equal(1, env.Simulator.State.InferenceRequests);
    }

    [Fact(Timeout = 30000)]
    public async Task AnInstanceUnderAVariantKey_HiddenFromTheV1List_IsNotLoadedAgain()
    {
        var options = Options(o => o.HideVariantInstancesFromV1 = true);
        await using var env = await GateEnvironment.StartAsync(options);
        // Loaded in LM Studio's UI under its variant key (F15): lms ps and /api/v0/models show it, /api/v1/models does not.
        await env.Simulator.State.LoadAsync(env.Simulator.State.Find(Gemma)!, Gemma + "@4bit", null);

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Gemma));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, env.Simulator.State.LoadCount(Gemma));
        Assert.Equal([Gemma + "@4bit"], env.Simulator.State.Instances().Select(i => i.Id));
    }

    // ---- The simulator and fake lms on their own -----------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task Simulator_RefusesAVariantKey_OnRestLoad_AndOnLmsLoad()
    {
        await using var sim = await SimulatorApp.StartAsync(Options());
        using var lms = new FakeLms(sim.Url, "START_MS=0");
        using var http = new HttpClient();

        using var rest = await http.PostAsJsonAsync(new Uri(sim.Url, "/api/v1/models/load"), new { model = Gemma + "@8bit" });
        var cli = await LmsProcess.RunAsync(lms, "load", Gemma + "@8bit", "-y");
        var list = await http.GetFromJsonAsync<System.Text.Json.Nodes.JsonObject>(new Uri(sim.Url, "/api/v1/models"));

        Assert.Equal(HttpStatusCode.NotFound, rest.StatusCode);
        Assert.Equal("{\"error\":{\"type\":\"model_not_found\",\"message\":\"Model google/gemma-4-31b@8bit not found in downloaded models\"}}", await rest.Content.ReadAsStringAsync());
        Assert.Equal(1, cli.ExitCode);
        Assert.StartsWith("Model not found", cli.Stderr);
        var gemma = list!["models"]!.AsArray().Single(m => (string?)m!["key"] == Gemma)!;
        Assert.Equal(Gemma + "@4bit", (string?)gemma["selected_variant"]);
        Assert.Equal(2, gemma["variants"]!.AsArray().Count);
        Assert.Equal(0, sim.State.TotalLoads);
    }
}
