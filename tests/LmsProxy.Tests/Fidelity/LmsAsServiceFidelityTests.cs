using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LmsProxy.Loading;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;

namespace LmsProxy.Tests.Fidelity;

/// <summary>
/// Issue 17 §2 and §7 (addendum F1, F2, F4, F7, F8, F10, F11): lms run by a service. Its load spinner on stdout, the
/// picker that waits on stdin, Chinese on a zh locale, an older lms without --local, no server for another OS user,
/// lms.exe in either Windows home layout, and the proxy never running `lms server start`.
/// </summary>
public sealed class LmsAsServiceFidelityTests
{
    private const string Qwen = "qwen/qwen3-8b";
    private const string Instruct = "qwen/qwen3-8b-instruct";
    private const long Gigabyte = 1_000_000_000;

    [Fact(Timeout = 30000)]
    public async Task TheLoadSpinner_OnStdout_IsReadAsProgress_AndTheLoadSucceeds()
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(1500) });
        var lms = Assert.IsType<LmsCliLoader>(env.Proxy.Scheduler.Hosts[0].Loader.Loader);
        var progress = new List<double>();
        lms.LoadProgress += (key, fraction) => { lock (progress) progress.Add(fraction); };

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        lock (progress)
        {
            Assert.True(progress.Count >= 3, $"progress reports: {string.Join(", ", progress)}");
            Assert.Equal(progress.Order(), progress);
            Assert.All(progress, p => Assert.InRange(p, 0, 1));
        }
        // F8: the proxy never starts or restarts LM Studio's server.
        Assert.DoesNotContain(env.Lms.Calls, c => c.StartsWith("server", StringComparison.Ordinal));
    }

    [Fact(Timeout = 30000)]
    public async Task APickerThatOpensAnyway_EndsAtOnce_BecauseStdinIsAtEndOfFile()
    {
        await using var env = await GateEnvironment.StartAsync(lmsMisbehaviour: "PICKER_ON=load");
        var started = Stopwatch.GetTimestamp();

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));

        // Not the 20 s time limit: the picker read end of file and lms exited 1.
        Assert.True(Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(5), $"took {Stopwatch.GetElapsedTime(started)}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("ExitPromptError", await response.ErrorMessage());
    }

    [Fact(Timeout = 30000)]
    public async Task OnAChineseLocale_LmsStillAnswersInEnglish_SoAGuardrailRefusalMakesRoom()
    {
        // 5.03 + 5.03 GB do not fit in 6 GB: the second load is refused, the proxy must read the refusal as "make room".
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50), MemoryBudgetBytes = 6 * Gigabyte },
            lmsMisbehaviour: "LANG=zh_CN.UTF-8");

        using var first = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var second = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Instruct));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal([Instruct], env.Simulator.State.Instances().Select(i => i.Id));
    }

    [Fact(Timeout = 30000)]
    public async Task AnOlderLmsWithoutLocal_IsDetectedOnce_TheFlagIsDropped_AndStatusSaysSo()
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(50) };
        options.LmsUnknownFlags.Add("--local");
        await using var env = await GateEnvironment.StartAsync(options);

        using var first = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));
        using var second = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));
        using var status = await env.Client.GetAsync("/status");

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        var loads = env.Lms.Calls.Where(c => c.StartsWith("load ", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, loads.Count);
        Assert.Contains("--local", loads[0]);
        Assert.DoesNotContain("--local", loads[1]);
        Assert.DoesNotContain("--local", loads[2]);
        var reason = (await status.ReadJson()).GetProperty("hosts")[0].GetProperty("loader").GetProperty("reason").GetString();
        Assert.Contains("does not know --local", reason);
    }

    [Fact(Timeout = 30000)]
    public async Task LmsFindingNoServer_IsReportedAsTheWrongOsUser_WithItsNameAndHome()
    {
        await using var env = await GateEnvironment.StartAsync(lmsMisbehaviour: "NO_SERVER=1");

        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat(Qwen));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var message = await response.ErrorMessage();
        Assert.Contains($"user '{Environment.UserName}'", message);
        Assert.Contains(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), message);
        Assert.Contains("same OS user as LM Studio", message);
    }

    [Theory]
    [InlineData(".lmstudio")]
    [InlineData(".cache/lm-studio")]
    public void LmsExe_IsFoundOnWindows_InEitherHomeLayout(string layout)
    {
        var home = Directory.CreateTempSubdirectory("home-").FullName;
        try
        {
            var bin = Path.Combine(home, layout, "bin");
            Directory.CreateDirectory(bin);
            File.WriteAllText(Path.Combine(bin, "lms.exe"), "");
            // Both homes exist, lms.exe is in only one of them (the pointer file is absent).
            Directory.CreateDirectory(Path.Combine(home, ".lmstudio"));
            Directory.CreateDirectory(Path.Combine(home, ".cache", "lm-studio"));

            Assert.Equal(Path.Combine(bin, "lms.exe"), LmsLocator.Find(null, home, windows: true, path: ""));
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    [Fact]
    public void LmsExe_IsFoundThroughThePointerFile()
    {
        var home = Directory.CreateTempSubdirectory("home-").FullName;
        try
        {
            var elsewhere = Path.Combine(home, "D", "lmstudio");
            Directory.CreateDirectory(Path.Combine(elsewhere, "bin"));
            File.WriteAllText(Path.Combine(elsewhere, "bin", "lms.exe"), "");
            File.WriteAllText(Path.Combine(home, ".lmstudio-home-pointer"), elsewhere + "\n");

            Assert.Equal(Path.Combine(elsewhere, "bin", "lms.exe"), LmsLocator.Find(null, home, windows: true, path: ""));
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    // ---- The fake lms on its own --------------------------------------------------------------------------------

    [Fact(Timeout = 30000)]
    public async Task FakeLms_WithoutYes_OpensThePicker_WhichWaitsWhileStdinIsOpen_AndExits1AtEndOfFile()
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(20) });
        using var lms = new FakeLms(sim.Url, "START_MS=0");

        // "qwen3-8b" matches two keys; "nothing-like-it" matches none: both open the picker (F2).
        await Assert.ThrowsAsync<TimeoutException>(() => LmsProcess.RunAsync(lms, ["load", "qwen3-8b"], stdinOpen: true, limit: TimeSpan.FromSeconds(1.5)));
        var none = await LmsProcess.RunAsync(lms, "load", "nothing-like-it");

        Assert.Equal(1, none.ExitCode);
        Assert.Contains("Cannot find a model matching", none.Stdout);
        Assert.Contains("ExitPromptError", none.Stderr);
        Assert.Empty(sim.State.Instances());
    }

    [Fact(Timeout = 30000)]
    public async Task FakeLms_Load_WritesSpinnerFramesToStdout_AndAnswersInChineseOnAZhLocale()
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(400) });
        using var lms = new FakeLms(sim.Url, "START_MS=0");

        var zh = await LmsProcess.RunAsync(lms, ["load", "google/gemma-3-1b", "-y"], env: new Dictionary<string, string> { ["LANG"] = "zh_CN.UTF-8", ["LMS_LANG"] = "" });
        var en = await LmsProcess.RunAsync(lms, ["load", "text-embedding-nomic-embed-text-v1.5", "-y"], env: new Dictionary<string, string> { ["LANG"] = "zh_CN.UTF-8", ["LMS_LANG"] = "en" });

        Assert.Equal(0, zh.ExitCode);
        Assert.StartsWith("\u001b[?25l\r", zh.Stdout);
        Assert.Matches(@"\r正在加载 google/gemma-3-1b \d+% [⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]", zh.Stdout);
        Assert.EndsWith("\r\u001b[K\u001b[?25h", zh.Stdout);
        Assert.StartsWith("模型加载成功", zh.Stderr);
        Assert.Matches(@"\rLoading text-embedding-nomic-embed-text-v1.5 \d+% ", en.Stdout);
        Assert.StartsWith("Model loaded successfully in ", en.Stderr);
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(en.Stdout));
    }
}
