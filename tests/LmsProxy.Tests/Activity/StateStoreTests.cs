using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Activity;

/// <summary>The state store: what survives a restart, and a file that cannot be used never stops the proxy.</summary>
public sealed class StateStoreTests : IDisposable
{
    private const string Qwen = "qwen/qwen3-8b";
    private readonly string _folder = Directory.CreateTempSubdirectory("lmsproxy-state-").FullName;

    private string StorePath => Path.Combine(_folder, "lmsproxy.db");

    public void Dispose()
    {
        foreach (var file in Directory.EnumerateFiles(_folder)) File.SetAttributes(file, FileAttributes.Normal);
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>Host b lists three 4 GB models of which LM Studio lets two fit, and a small qwen; host a lists the defaults.</summary>
    private static SimulatorOptions HostOptions(int index) => index == 0
        ? new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100) }
        : new SimulatorOptions
        {
            LoadTime = TimeSpan.FromMilliseconds(100),
            MemoryBudgetBytes = 9_000_000_000,
            Models =
            [
                new("lab/alpha-4b", "llm", "lab/alpha-4b.gguf", 4_000_000_000),
                new("lab/beta-4b", "llm", "lab/beta-4b.gguf", 4_000_000_000),
                new("lab/gamma-4b", "llm", "lab/gamma-4b.gguf", 4_000_000_000),
                new(Qwen, "llm", "qwen.gguf", 500_000_000),
            ],
        };

    private Dictionary<string, string?> ClusterSettings(IReadOnlyList<SimulatorApp> hosts) => new()
    {
        ["LmsProxy:Loader"] = "rest",
        ["LmsProxy:HealthCheckInterval"] = "00:00:01",
        ["LmsProxy:Hosts:gpu-a:Url"] = hosts[0].Url.GetLeftPart(UriPartial.Authority),
        ["LmsProxy:Hosts:gpu-b:Url"] = hosts[1].Url.GetLeftPart(UriPartial.Authority),
        ["LmsProxy:State:Path"] = StorePath,
    };

    [Fact(Timeout = 60000)]
    public async Task AfterARestart_PinsACeilingLoadTimesTheAffinityChainAndTheHistoryAreBack()
    {
        await using var a = await SimulatorApp.StartAsync(HostOptions(0));
        await using var b = await SimulatorApp.StartAsync(HostOptions(1));
        var settings = ClusterSettings([a, b]);
        long ceiling;
        string chainId;
        int records;
        await using (var first = new ProxyApp(a.Url, settings))
        {
            await Eventually.Until(() => first.Refreshed);
            using var client = first.Client();
            // The conversation starts on gpu-b, the only host with qwen loaded then.
            await b.State.LoadAsync(b.State.Find(Qwen)!, null, null);
            await first.Scheduler.RefreshAllAsync(CancellationToken.None);
            using var turn1 = await client.PostAsync("/v1/responses", Json.Body("""{"model":"qwen/qwen3-8b","input":"turn 1"}"""));
            Assert.Equal("gpu-b", turn1.Headers.GetValues("X-LmsProxy-Host").Single());
            chainId = (await turn1.ReadJson()).GetProperty("id").GetString()!;
            // Then gpu-a has it warm too (the obvious choice without the map), and gpu-b's refusal teaches a ceiling.
            await a.State.LoadAsync(a.State.Find(Qwen)!, null, null);
            foreach (var model in new[] { "lab/alpha-4b", "lab/beta-4b", "lab/gamma-4b" })
            {
                using var response = await client.PostAsync("/v1/chat/completions", Json.Chat(model));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }
            Assert.True(b.State.RefusedLoads >= 1);
            using (await client.SendAsync(Action("/models/lab%2Fgamma-4b/pin"))) { }
            // More records than one write statement takes (64).
            for (var i = 0; i < 70; i++) using (await client.GetAsync("/v1/models")) { }
            var status = await (await client.GetAsync("/status")).ReadJson();
            ceiling = Host(status, "gpu-b").GetProperty("capacity").GetProperty("learnedCeilingBytes").GetInt64();
            Assert.True(ceiling > 0);
            Assert.True(status.GetProperty("store").GetProperty("persistent").GetBoolean());
            records = (await ActivityTests.ActivityAsync(client, "?limit=1000")).Length;
            Assert.True(records > 70);
        }

        await using var second = new ProxyApp(a.Url, settings);
        await Eventually.Until(() => second.Refreshed);
        await second.Scheduler.RefreshAllAsync(CancellationToken.None);
        using var again = second.Client();
        var after = await (await again.GetAsync("/status")).ReadJson();
        using var turn2 = await again.PostAsync("/v1/responses", Json.Body($$"""{"model":"qwen/qwen3-8b","input":"turn 2","previous_response_id":"{{chainId}}"}"""));
        var history = await ActivityTests.ActivityAsync(again, "?limit=1000");
        var usage = await (await again.GetAsync("/usage?by=model")).ReadJson();

        Assert.Equal(HttpStatusCode.OK, turn2.StatusCode);
        Assert.Equal("gpu-b", turn2.Headers.GetValues("X-LmsProxy-Host").Single());
        Assert.Equal(ceiling, Host(after, "gpu-b").GetProperty("capacity").GetProperty("learnedCeilingBytes").GetInt64());
        Assert.True(after.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("key").GetString() == "lab/gamma-4b").GetProperty("pinned").GetBoolean());
        Assert.True(after.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("key").GetString() == "lab/alpha-4b").GetProperty("lastLoadMs").GetDouble() > 0);
        Assert.Equal(records + 1, history.Length);
        Assert.Contains(history, r => r.GetProperty("model").GetString() == "lab/alpha-4b" && r.GetProperty("host").GetString() == "gpu-b");
        Assert.Equal(history.Select(r => r.GetProperty("id").GetInt64()).Distinct().Count(), history.Length);
        Assert.Equal(1, usage.GetProperty("usage").EnumerateArray().Single(r => r.GetProperty("name").GetString() == "lab/alpha-4b").GetProperty("requests").GetInt64());
    }

    [Fact(Timeout = 30000)]
    public async Task ACorruptStoreFile_TheProxyServes_AndStatusSaysWhyItHasNoHistory()
    {
        await File.WriteAllTextAsync(StorePath, string.Concat(Enumerable.Repeat("this is not a database ", 500)));
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:State:Path"] = StorePath });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        var store = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("store");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(store.GetProperty("persistent").GetBoolean());
        Assert.Contains("memory only", store.GetProperty("problem").GetString());
        Assert.Contains("not a database", store.GetProperty("problem").GetString());
        Assert.Single(await ActivityTests.ActivityAsync(env.Client)); // the record is still there, in memory
        Assert.StartsWith("this is not a database", await File.ReadAllTextAsync(StorePath)); // left for the operator to look at
        Assert.Contains(env.Proxy.Logs.Lines, l => l.StartsWith("Error LmsProxy.Storage.StateStore", StringComparison.Ordinal) && l.Contains(StorePath));
    }

    [Fact(Timeout = 30000)]
    public async Task AReadOnlyStoreFile_TheProxyServes_AndStatusSaysWhyItHasNoHistory()
    {
        await File.WriteAllBytesAsync(StorePath, []);
        File.SetAttributes(StorePath, FileAttributes.ReadOnly);
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:State:Path"] = StorePath });

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        var store = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("store");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(store.GetProperty("persistent").GetBoolean());
        Assert.Contains("read-only", store.GetProperty("problem").GetString());
        Assert.Equal(0, new FileInfo(StorePath).Length);
    }

    [Fact(Timeout = 30000)]
    public async Task TwoProxiesOnOneFile_TheSecondSaysSoAtStart_AndTheFirstsHistoryIsIntact()
    {
        var settings = new Dictionary<string, string?> { ["LmsProxy:State:Path"] = StorePath };
        await using var env = await GateEnvironment.StartAsync(settings: settings);
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen))) { }
        await using (var second = new ProxyApp(env.Simulator.Url, settings))
        {
            using var client = second.Client();
            var store = (await (await client.GetAsync("/status")).ReadJson()).GetProperty("store");
            using var served = await client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));

            Assert.False(store.GetProperty("persistent").GetBoolean());
            Assert.Contains("another LmsProxy process", store.GetProperty("problem").GetString());
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
            Assert.Contains(second.Logs.Lines, l => l.StartsWith("Error LmsProxy.Storage.StateStore", StringComparison.Ordinal) && l.Contains("another LmsProxy process"));
        }
        var first = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("store");
        Assert.True(first.GetProperty("persistent").GetBoolean());
        await env.Proxy.DisposeAsync();

        await using var third = new ProxyApp(env.Simulator.Url, settings);
        using var reader = third.Client();
        var reopened = (await (await reader.GetAsync("/status")).ReadJson()).GetProperty("store");
        Assert.True(reopened.GetProperty("persistent").GetBoolean(), reopened.GetRawText());
        Assert.Single(await ActivityTests.ActivityAsync(reader));
    }

    private static JsonElement Host(JsonElement status, string name) => status.GetProperty("hosts").EnumerateArray().Single(h => h.GetProperty("name").GetString() == name);

    private static HttpRequestMessage Action(string path)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path);
        request.Headers.Add("X-LmsProxy-Action", "1");
        return request;
    }
}
