using System.Net;
using LmsProxy.Loading;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Fidelity;

/// <summary>
/// Issue 17 §6 (addendum F4, F10, F21, F26): a Bionic host is an LM Studio host and /status says which app each host
/// runs; with LM Link, lms loads stay on this machine (--local), and lms ps's other-device instances are told apart.
/// </summary>
public sealed class BionicAndLinkFidelityTests
{
    private const string Qwen = "qwen/qwen3-8b";
    private static readonly SimDevice Studio = new("dev-studio-mac", "studio-mac");

    [Fact(Timeout = 30000)]
    public async Task ABionicHost_IsServedAsAnLmStudioHost_AndStatusSaysItIsBionic()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { Bionic = true, LoadTime = TimeSpan.FromMilliseconds(50) });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var status = await env.Client.GetAsync("/status");
        using var ready = await env.Client.GetAsync("/readyz");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("LM Studio Bionic 1.1.0", (await status.ReadJson()).GetProperty("hosts")[0].GetProperty("app").GetString());
    }

    [Fact(Timeout = 30000)]
    public async Task AnLmStudioHost_IsNamedSoInStatus()
    {
        await using var env = await GateEnvironment.StartAsync();
        await Eventually.Until(() => env.Proxy.Refreshed);

        using var status = await env.Client.GetAsync("/status");

        Assert.Equal("LM Studio", (await status.ReadJson()).GetProperty("hosts")[0].GetProperty("app").GetString());
    }

    [Fact(Timeout = 30000)]
    public async Task WithLmLinkAndARemotePreferredDevice_LmsLoadsStayOnThisMachine()
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50), LinkedDevices = [Studio], PreferredDevice = Studio.Identifier };
        await using var env = await GateEnvironment.StartAsync(options);

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var instance = Assert.Single(env.Simulator.State.Instances());
        Assert.True(instance.IsLocal, $"loaded on {instance.DeviceIdentifier}");
        Assert.All(env.Lms.Calls.Where(c => c.StartsWith("load ", StringComparison.Ordinal)), c => Assert.Contains("--local", c));
        Assert.DoesNotContain(env.Lms.Calls, c => c.Contains("--all") || c.StartsWith("server", StringComparison.Ordinal));
    }

    [Fact(Timeout = 30000)]
    public async Task LmsPs_ListsAnotherDevicesInstance_AndItIsToldApartFromThisMachines()
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20), LinkedDevices = [Studio] };
        await using var env = await GateEnvironment.StartAsync(options);
        await env.Simulator.State.LoadAsync(env.Simulator.State.Find("google/gemma-3-1b")!, null, null, device: Studio.Identifier);
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { }
        var lms = Assert.IsType<LmsCliLoader>(env.Proxy.Scheduler.Hosts[0].Loader.Loader);

        var ps = await lms.ListLoadedAsync(CancellationToken.None);

        Assert.Equal(2, ps.Count);
        var remote = Assert.Single(ps, i => !i.IsLocal());
        Assert.Equal(Studio.Identifier, remote.DeviceIdentifier);
        Assert.True(remote.ToLoadedInstance().IsRemote);
        Assert.Equal(Qwen, Assert.Single(ps, i => i.IsLocal()).Identifier);
        // With LM Link on, this machine's own entries may carry its device id (F10): still local.
        Assert.True(remote.IsLocal(localDeviceIdentifier: Studio.Identifier));
        // The REST list the scheduler reads does not show the other device's instance (undocumented; off by default).
        Assert.False(env.Proxy.Scheduler.Catalog.Resolve("google/gemma-3-1b")!.IsLoaded);
    }
}
