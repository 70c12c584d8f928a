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

    private static async Task<string?> AnsweringModel(GateEnvironment env, string alias)
    {
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(alias));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.ReadJson()).GetProperty("model").GetString();
    }
}
