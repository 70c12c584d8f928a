using System.Net;
using LmsProxy.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Security;

/// <summary>Listening beyond loopback without API keys is allowed, but the start-up log and /status say what it means.</summary>
public sealed class ExposureWarningTests : IAsyncLifetime
{
    private const string Warning = "anyone who can reach";
    private WireMockServer _lmStudio = null!;

    public Task InitializeAsync()
    {
        _lmStudio = WireMockServer.Start();
        _lmStudio.Given(Request.Create().WithPath("/api/v1/models").UsingGet()).RespondWith(Response.Create().WithHeader("Content-Type", "application/json").WithBody("{\"models\":[]}"));
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        _lmStudio.Stop();
        return Task.CompletedTask;
    }

    private async Task<(string[] Warnings, IReadOnlyList<string> Log)> StartAsync(Dictionary<string, string?> settings, string? key = null)
    {
        await using var proxy = new ProxyApp(new Uri(_lmStudio.Url!), settings);
        using var client = proxy.Client();
        if (key is not null) client.DefaultRequestHeaders.Authorization = new("Bearer", key);
        using var response = await client.GetAsync("/status");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var warnings = (await response.ReadJson()).GetProperty("warnings").EnumerateArray().Select(w => w.GetString()!).ToArray();
        return (warnings, proxy.Logs.Lines);
    }

    [Fact(Timeout = 15000)]
    public async Task AllInterfacesWithoutKeys_WarnsInTheLogAndInStatus()
    {
        var (warnings, log) = await StartAsync(new() { ["urls"] = "http://0.0.0.0:0" });

        var line = Assert.Single(log, l => l.Contains(Warning, StringComparison.Ordinal));
        Assert.StartsWith("Warning LmsProxy:", line);
        Assert.Contains("0.0.0.0", line);
        Assert.Contains("load and unload models", line);
        Assert.Contains("LmsProxy:ApiKeys", line);
        var warning = Assert.Single(warnings);
        Assert.Contains(Warning, warning);
        Assert.Contains("LmsProxy:ApiKeys", warning);
    }

    [Fact(Timeout = 15000)]
    public async Task AllInterfacesWithKeys_OrLoopbackWithout_DoNotWarn()
    {
        const string Key = "proxy-key-0123456789";
        var (keyed, keyedLog) = await StartAsync(new() { ["urls"] = "http://0.0.0.0:0", ["LmsProxy:ApiKeys:0"] = Key, ["LmsProxy:OpenStatus"] = "true" });
        var (loopback, loopbackLog) = await StartAsync([]);

        Assert.Empty(keyed);
        Assert.Empty(loopback);
        Assert.DoesNotContain(keyedLog, l => l.Contains(Warning, StringComparison.Ordinal));
        Assert.DoesNotContain(loopbackLog, l => l.Contains(Warning, StringComparison.Ordinal));
    }
}
