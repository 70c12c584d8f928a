using LmStudioSimulator;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>A simulated LM Studio, a fake lms that drives it, and the proxy in front: one set per test.</summary>
internal sealed class GateEnvironment : IAsyncDisposable
{
    private GateEnvironment(SimulatorApp simulator, FakeLms lms, ProxyApp proxy)
    {
        Simulator = simulator;
        Lms = lms;
        Proxy = proxy;
        Client = proxy.Client();
    }

    public SimulatorApp Simulator { get; }
    public FakeLms Lms { get; }
    public ProxyApp Proxy { get; }
    public HttpClient Client { get; }

    /// <summary>Starts all three; the proxy loads with the fake lms unless settings say otherwise.</summary>
    public static async Task<GateEnvironment> StartAsync(SimulatorOptions? simulator = null, IDictionary<string, string?>? settings = null, string lmsMisbehaviour = "", string? settingsFile = null)
    {
        var sim = await SimulatorApp.StartAsync(simulator ?? new SimulatorOptions());
        var lms = new FakeLms(sim.Url, lmsMisbehaviour);
        var all = new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "lms",
            ["LmsProxy:Lms:Path"] = lms.Path,
            ["LmsProxy:Lms:Timeout"] = "00:00:20",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>()) all[key] = value;
        return new GateEnvironment(sim, lms, new ProxyApp(sim.Url, all, settingsFile));
    }

    /// <summary>An operator's unload of <paramref name="model"/>, returning once neither LM Studio nor the proxy holds it.</summary>
    public async Task UnloadAsync(string model)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/models/" + Uri.EscapeDataString(model) + "/unload") { Headers = { { "X-LmsProxy-Action", "1" } } };
        (await Client.SendAsync(request)).Dispose();
        await Eventually.Until(() => Simulator.State.Instances().Count == 0 && !Proxy.IsLoaded(model));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Proxy.DisposeAsync();
        await Simulator.DisposeAsync();
        Lms.Dispose();
    }
}
