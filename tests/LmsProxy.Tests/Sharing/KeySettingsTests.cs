using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using LmsProxy.Configuration;
using LmsProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace LmsProxy.Tests.Sharing;

/// <summary>Bad key settings are refused with a sentence naming the setting; good edits apply without a restart.</summary>
public sealed class KeySettingsTests
{
    private static List<string> Errors(params (string Key, string Value)[] settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build();
        Assert.Null(ProxySettings.Bind(configuration, out var errors));
        return errors;
    }

    [Fact]
    public void EachBadKeySetting_IsNamed_WithWhatWouldBeRight()
    {
        Assert.Contains("LmsProxy:Keys:alice: give exactly one of Key (the secret) or KeyHash", Assert.Single(Errors(
            ("LmsProxy:Keys:alice:Key", "alice-secret-0123456789"), ("LmsProxy:Keys:alice:KeyHash", new string('a', 64)))));
        Assert.Contains("it has neither", Assert.Single(Errors(("LmsProxy:Keys:alice:Role", "operator"))));
        Assert.Contains("LmsProxy:Keys:alice:KeyHash must be the SHA-256 of the key as 64 hex digits", Assert.Single(Errors(("LmsProxy:Keys:alice:KeyHash", "abc123"))));
        Assert.Contains("LmsProxy:Keys:alice:Key must be at least 16 characters", Assert.Single(Errors(("LmsProxy:Keys:alice:Key", "short"))));
        Assert.Contains("LmsProxy:Keys:bob has the same secret as LmsProxy:Keys:alice", Assert.Single(Errors(
            ("LmsProxy:Keys:alice:Key", "shared-secret-0123456789"), ("LmsProxy:Keys:bob:Key", "shared-secret-0123456789"))));
        Assert.Contains("LmsProxy:Keys:alice:MaxConcurrent must be 0 (no limit) or more", Assert.Single(Errors(
            ("LmsProxy:Keys:alice:Key", "alice-secret-0123456789"), ("LmsProxy:Keys:alice:MaxConcurrent", "-1"))));
        Assert.Contains("LmsProxy:Keys:alice:Models entry '-x'", Assert.Single(Errors(
            ("LmsProxy:Keys:alice:Key", "alice-secret-0123456789"), ("LmsProxy:Keys:alice:Models:0", "-x"))));
        Assert.Contains("LmsProxy:ApiKeys:0 is also LmsProxy:Keys:alice", Assert.Single(Errors(
            ("LmsProxy:Keys:alice:Key", "alice-secret-0123456789"), ("LmsProxy:ApiKeys:0", "alice-secret-0123456789"))));
        Assert.Contains("'admin'", Assert.Single(Errors(("LmsProxy:Keys:alice:Key", "alice-secret-0123456789"), ("LmsProxy:Keys:alice:Role", "admin"))));
    }

    [Theory(Timeout = 30000)]
    [InlineData("--LmsProxy:Keys:alice:KeyHash=abc", "LmsProxy:Keys:alice:KeyHash")]
    [InlineData("--LmsProxy:Keys:alice:Priority=urgent", "urgent")]
    public async Task ABadKeySetting_StopsTheRealProgram_WithOneLineNamingIt(string argument, string named)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "LmsProxy.dll"), argument, "--urls=http://127.0.0.1:0"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            WorkingDirectory = Path.GetTempPath(),
        };
        using var process = Process.Start(start)!;
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();

        Assert.Equal(2, process.ExitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("LmsProxy cannot start:", line);
        Assert.Contains(named, line);
    }

    [Fact(Timeout = 30000)]
    public async Task AKeyAddedOrLimitedInTheSettingsFile_AppliesWithoutARestart()
    {
        var file = Path.Combine(Path.GetTempPath(), $"lmsproxy-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, """{"LmsProxy":{"Keys":{"alice":{"Key":"alice-secret-0123456789"}}}}""");
        try
        {
            await using var env = await GateEnvironment.StartAsync(settingsFile: file);
            Assert.Equal(HttpStatusCode.Unauthorized, await StatusAs(env, "carol-secret-0123456789"));

            File.WriteAllText(file, """{"LmsProxy":{"Keys":{"alice":{"Key":"alice-secret-0123456789","Models":["google/*"]},"carol":{"Key":"carol-secret-0123456789"}}}}""");
            await Eventually.Until(async () => await StatusAs(env, "carol-secret-0123456789") == HttpStatusCode.OK);
            Assert.Equal(HttpStatusCode.Forbidden, await StatusAs(env, "alice-secret-0123456789"));

            // An invalid edit is refused; the keys in force stay.
            File.WriteAllText(file, """{"LmsProxy":{"Keys":{"alice":{"KeyHash":"nothex"}}}}""");
            await Eventually.Until(() => env.Proxy.Logs.Lines.Any(l => l.Contains("Configuration change rejected", StringComparison.Ordinal) && l.Contains("LmsProxy:Keys:alice:KeyHash", StringComparison.Ordinal)));
            Assert.Equal(HttpStatusCode.OK, await StatusAs(env, "carol-secret-0123456789"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static async Task<HttpStatusCode> StatusAs(GateEnvironment env, string secret)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("qwen/qwen3-8b") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        using var response = await env.Client.SendAsync(request);
        return response.StatusCode;
    }
}
