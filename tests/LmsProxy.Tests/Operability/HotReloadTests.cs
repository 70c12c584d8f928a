using System.Net;
using LmsProxy.Tests.Infrastructure;

namespace LmsProxy.Tests.Operability;

/// <summary>Edits to the settings file apply while the proxy runs; an invalid edit is refused and the last good settings stay.</summary>
public sealed class HotReloadTests
{
    [Fact(Timeout = 30000)]
    public async Task AliasEdit_AppliesWithoutRestart_AndInvalidEditIsRejected()
    {
        var file = Path.Combine(Path.GetTempPath(), $"lmsproxy-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, """{"LmsProxy":{"Aliases":{"fast":"google/gemma-3-1b"}}}""");
        try
        {
            await using var env = await GateEnvironment.StartAsync(settingsFile: file);
            Assert.Equal("google/gemma-3-1b", await AnsweringModel(env, "fast"));

            File.WriteAllText(file, """{"LmsProxy":{"Aliases":{"fast":"qwen/qwen3-8b"}}}""");
            await Eventually.Until(async () => await AnsweringModel(env, "fast") == "qwen/qwen3-8b");

            File.WriteAllText(file, """{"LmsProxy":{"HoldTimeout":"-00:00:01","Aliases":{"fast":"google/gemma-3-1b"}}}""");
            await Eventually.Until(() => env.Proxy.Logs.Lines.Any(l => l.Contains("Configuration change rejected", StringComparison.Ordinal) && l.Contains("LmsProxy:HoldTimeout", StringComparison.Ordinal)));
            Assert.Equal("qwen/qwen3-8b", await AnsweringModel(env, "fast"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact(Timeout = 60000)]
    public async Task AHostAddedOrRemovedInTheSettingsFile_JoinsOrLeavesPlacementLive()
    {
        await using var a = await LmStudioSimulator.SimulatorApp.StartAsync(new LmStudioSimulator.SimulatorOptions { Models = [new("qwen/qwen3-8b", "llm", "q.gguf")] });
        await using var b = await LmStudioSimulator.SimulatorApp.StartAsync(new LmStudioSimulator.SimulatorOptions { Models = [new("openai/gpt-oss-20b", "llm", "o.gguf")] });
        static string Hosts(params SimulatorHost[] hosts) => System.Text.Json.JsonSerializer.Serialize(new
        {
            LmsProxy = new { Hosts = hosts.ToDictionary(h => h.Name, h => new { Url = h.Url.GetLeftPart(UriPartial.Authority) }) },
        });
        var file = Path.Combine(Path.GetTempPath(), $"lmsproxy-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, Hosts(new SimulatorHost("gpu-a", a.Url)));
        try
        {
            await using var proxy = new ProxyApp(a.Url, new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest" }, file);
            using var client = proxy.Client();
            using var before = await client.PostAsync("/v1/chat/completions", Json.Chat("openai/gpt-oss-20b"));
            Assert.Equal(HttpStatusCode.NotFound, before.StatusCode);

            File.WriteAllText(file, Hosts(new SimulatorHost("gpu-a", a.Url), new SimulatorHost("gpu-b", b.Url)));
            await Eventually.Until(async () =>
            {
                using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("openai/gpt-oss-20b"));
                return response.StatusCode == HttpStatusCode.OK;
            });
            Assert.Equal(1, b.State.LoadCount("openai/gpt-oss-20b"));

            File.WriteAllText(file, Hosts(new SimulatorHost("gpu-b", b.Url)));
            await Eventually.Until(async () => (await (await client.GetAsync("/status")).ReadJson()).GetProperty("hosts").GetArrayLength() == 1);
            using var gone = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        }
        finally
        {
            File.Delete(file);
        }
    }

    private sealed record SimulatorHost(string Name, Uri Url);

    private static async Task<string?> AnsweringModel(GateEnvironment env, string alias)
    {
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(alias));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.ReadJson()).GetProperty("model").GetString();
    }
}
