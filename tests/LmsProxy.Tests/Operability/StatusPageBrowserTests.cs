using System.Diagnostics;
using LmsProxy.Tests.Infrastructure;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Operability;

/// <summary>The status page, as a person sees it: rendered by headless Chromium, with its script run against /status.</summary>
public sealed class StatusPageBrowserTests(ITestOutputHelper output)
{
    private const string Chromium = "/usr/bin/chromium";

    [Fact(Timeout = 60000)]
    public async Task StatusPage_ShowsUpstreamLoaderAndModelStates()
    {
        if (!File.Exists(Chromium))
        {
            // .ci/run installs Debian's chromium; on a developer machine without it this check cannot run.
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, $"{Chromium} is missing in CI");
            output.WriteLine($"skipped: {Chromium} not installed (apt-get install chromium)");
            return;
        }
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        var dom = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        Assert.Contains("LM Studio " + env.Simulator.Url, dom);
        Assert.Contains("<span class=\"ok\">answers</span>", dom);
        Assert.Contains("Loader: lms", dom);
        Assert.Matches("<tr data-model=\"qwen/qwen3-8b\"><td>qwen/qwen3-8b</td><td class=\"ok\">loaded</td><td>0</td><td>\\d+ ms</td>", dom);
        Assert.Contains("<tr data-model=\"google/gemma-3-1b\"><td>google/gemma-3-1b</td><td class=\"muted\">not loaded</td>", dom);
    }

    /// <summary>The DOM after the page's scripts ran (virtual time lets its fetch of /status finish).</summary>
    private static async Task<string> RenderAsync(Uri page)
    {
        var profile = Directory.CreateTempSubdirectory("chromium-");
        try
        {
            var start = new ProcessStartInfo(Chromium,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile.FullName, "--virtual-time-budget=3000",
                "--dump-dom", page.ToString(),
            ])
            { RedirectStandardOutput = true, RedirectStandardError = true };
            using var process = Process.Start(start)!;
            var dom = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(45));
            return await dom;
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }
}
