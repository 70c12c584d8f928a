using LmStudioSimulator;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>Several simulated LM Studio hosts (gpu-a, gpu-b, ...) behind one proxy, configured through LmsProxy:Hosts.</summary>
internal sealed class ClusterEnvironment : IAsyncDisposable
{
    private ClusterEnvironment(IReadOnlyList<SimulatorApp> hosts, ProxyApp proxy)
    {
        Hosts = hosts;
        Proxy = proxy;
        Client = proxy.Client();
    }

    public IReadOnlyList<SimulatorApp> Hosts { get; }
    public ProxyApp Proxy { get; }
    public HttpClient Client { get; }

    public SimulatorApp this[string name] => Hosts[name[^1] - 'a'];

    public static string NameOf(int index) => "gpu-" + (char)('a' + index);

    public static async Task<ClusterEnvironment> StartAsync(int count, Func<int, SimulatorOptions>? simulator = null, IDictionary<string, string?>? settings = null)
    {
        var hosts = new List<SimulatorApp>();
        for (var i = 0; i < count; i++) hosts.Add(await SimulatorApp.StartAsync(simulator?.Invoke(i) ?? new SimulatorOptions()));
        var all = new Dictionary<string, string?>
        {
            ["LmsProxy:Loader"] = "rest",
            ["LmsProxy:HealthCheckInterval"] = "00:00:01",
        };
        for (var i = 0; i < count; i++) all[$"LmsProxy:Hosts:{NameOf(i)}:Url"] = hosts[i].Url.GetLeftPart(UriPartial.Authority);
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>()) all[key] = value;
        var proxy = new ProxyApp(hosts[0].Url, all);
        await Eventually.Until(() => proxy.Refreshed);
        return new ClusterEnvironment(hosts, proxy);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Proxy.DisposeAsync();
        foreach (var host in Hosts) await host.DisposeAsync();
    }
}
