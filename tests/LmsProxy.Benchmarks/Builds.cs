using System.Diagnostics;
using System.Globalization;

namespace LmsProxy.Benchmarks;

/// <summary>
/// `--builds name=command [name=command ...]`: the ways of starting LmsProxy (`dotnet LmsProxy.dll`, the tool's command,
/// a published binary, the Native AOT binary) measured one after another in the same run, against the same static nginx,
/// with no runtime setting in the environment (what a user gets): time from start to a ready /readyz, resident memory
/// idle and at its peak under 64 connections, warm requests per second at 1, 16 and 64 connections (median of three
/// rounds, the builds interleaved in each) and CPU per request. A command runs with ASPNETCORE_URLS and the upstream set.
/// An image: `image=podman run --rm --name NAME --network host -e ASPNETCORE_URLS -e LmsProxy__Upstream -e LmsProxy__Loader IMAGE`
/// (podman passes those on from its own environment); its container's main process is the one measured.
/// </summary>
internal static class Builds
{
    private sealed record Build(string Name, string File, string[] Args)
    {
        public Process? Process { get; set; }
        public int Port { get; set; }
        public double ReadyMs { get; set; }
        public double IdleMiB { get; set; }
        public double PeakMiB { get; set; }

        /// <summary>The process measured: the container's main process for `podman run --name NAME`.</summary>
        public int Pid { get; set; }

        public string? Container => File == "podman" && Array.IndexOf(Args, "--name") is var i and >= 0 ? Args[i + 1] : null;
    }

    public static async Task<int> RunAsync(string[] specs, int seconds, Processes processes)
    {
        var builds = specs.Select(spec =>
        {
            var (name, command) = (spec[..spec.IndexOf('=', StringComparison.Ordinal)], spec[(spec.IndexOf('=', StringComparison.Ordinal) + 1)..]);
            var parts = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return new Build(name, parts[0], parts[1..]);
        }).ToList();
        var work = Directory.CreateTempSubdirectory("lmsproxy-builds-").FullName;
        var upstreamPort = Processes.FreePort();
        processes.Start("nginx", ["-c", Targets.UpstreamNginx(Path.Combine(work, "upstream"), upstreamPort)]);
        await Processes.WaitForHttp($"http://127.0.0.1:{upstreamPort}/v1/models");

        // Start-up, one at a time (the machine otherwise idle): the median of three starts, then the one kept running.
        foreach (var build in builds)
        {
            var starts = new List<double>();
            for (var i = 0; i < 3; i++)
            {
                build.Port = Processes.FreePort();
                if (build.Container is { } stale) await RemoveContainer(stale);
                var watch = Stopwatch.StartNew();
                var process = Start(processes, build, upstreamPort, work);
                await WaitForReady(build.Port);
                starts.Add(watch.Elapsed.TotalMilliseconds);
                if (i < 2)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync();
                    if (build.Container is { } container) await RemoveContainer(container);
                }
                else build.Process = process;
            }
            build.Pid = build.Container is { } name
                ? int.Parse((await Processes.RunAsync("podman", ["inspect", "--format", "{{.State.Pid}}", name])).Trim(), CultureInfo.InvariantCulture)
                : build.Process!.Id;
            build.ReadyMs = starts.Order().ElementAt(1);
            await Task.Delay(2000);
            build.IdleMiB = Processes.RssMiB(build.Pid);
        }

        foreach (var build in builds) await Wrk.RunAsync(Url(build), 64, TimeSpan.FromSeconds(10), Targets.ChatBody, work);
        const int Rounds = 3;
        var results = new Dictionary<(string, int), List<WrkResult>>();
        foreach (var connections in new[] { 1, 16, 64 })
        {
            for (var round = 0; round < Rounds; round++)
            {
                foreach (var build in builds)
                {
                    var pid = build.Pid;
                    using var sampler = new CancellationTokenSource();
                    var sampling = connections != 64 ? Task.CompletedTask : Task.Run(async () =>
                    {
                        while (!sampler.IsCancellationRequested) { build.PeakMiB = Math.Max(build.PeakMiB, Processes.RssMiB(pid)); await Task.Delay(200); }
                    });
                    var cpuBefore = Processes.CpuMicroseconds(pid);
                    var result = await Wrk.RunAsync(Url(build), connections, TimeSpan.FromSeconds(seconds), Targets.ChatBody, work);
                    result = result with { CpuMicrosecondsPerRequest = (Processes.CpuMicroseconds(pid) - cpuBefore) / (result.RequestsPerSecond * seconds) };
                    sampler.Cancel();
                    await sampling;
                    if (!results.TryGetValue((build.Name, connections), out var list)) results[(build.Name, connections)] = list = [];
                    list.Add(result);
                }
            }
        }
        WrkResult Median(string name, int connections) => results[(name, connections)].OrderBy(r => r.RequestsPerSecond).ElementAt(Rounds / 2);

        Console.WriteLine($"\n## Ways of starting LmsProxy (no runtime settings in the environment; wrk, median of {Rounds} interleaved rounds of {seconds} s; 2 cores, loopback, static nginx upstream)\n");
        Console.WriteLine("| build | start to ready /readyz ms (median of 3) | RSS idle MiB | RSS peak at 64 connections MiB | req/s 1 | req/s 16 | req/s 64 | CPU µs per request at 64 | errors |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var build in builds)
        {
            var (r1, r16, r64) = (Median(build.Name, 1), Median(build.Name, 16), Median(build.Name, 64));
            var errors = results.Where(r => r.Key.Item1 == build.Name).Sum(r => r.Value.Sum(x => x.Errors));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {build.Name} | {build.ReadyMs:0} | {build.IdleMiB:0} | {build.PeakMiB:0} | {r1.RequestsPerSecond:0} | {r16.RequestsPerSecond:0} | {r64.RequestsPerSecond:0} | {r64.CpuMicrosecondsPerRequest:0.0} | {errors} |"));
        }
        if (builds.Count > 1)
        {
            var first = builds[0].Name;
            foreach (var build in builds.Skip(1))
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"\n{build.Name} / {first} requests per second: {string.Join(", ", new[] { 1, 16, 64 }.Select(c => $"{c}: {Median(build.Name, c).RequestsPerSecond / Median(first, c).RequestsPerSecond:0.00}"))}"));
            }
        }
        foreach (var container in builds.Select(b => b.Container).OfType<string>()) await RemoveContainer(container);
        Directory.Delete(work, recursive: true);
        return 0;
    }

    private static async Task RemoveContainer(string name)
    {
        using var rm = Process.Start(new ProcessStartInfo("podman", ["rm", "-f", "-t", "1", name]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        await rm.WaitForExitAsync();
    }

    private static string Url(Build build) => $"http://127.0.0.1:{build.Port}/v1/chat/completions";

    private static Process Start(Processes processes, Build build, int upstreamPort, string work)
    {
        var env = new Dictionary<string, string>
        {
            // A store file of its own: the builds run side by side, and a second process finds a shared file locked
            // (it waits 3 s for the lock, then goes on in memory: that was the start-up time measured).
            ["LmsProxy__State__Path"] = Path.Combine(work, build.Name, "lmsproxy.db"),
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{build.Port}",
            ["LmsProxy__Upstream"] = $"http://127.0.0.1:{upstreamPort}",
            ["LmsProxy__Loader"] = "rest",
            ["Logging__LogLevel__LmsProxy.Requests"] = "Warning",
        };
        return processes.Start(build.File, build.Args, env, workingDirectory: Path.GetTempPath());
    }

    /// <summary>Polls /readyz every millisecond until it answers 200 (ready: the upstream was reached).</summary>
    private static async Task WaitForReady(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            try
            {
                using var response = await http.GetAsync($"http://127.0.0.1:{port}/readyz");
                if (response.IsSuccessStatusCode) return;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException) { } // not listening yet, or slow
            await Task.Delay(1);
        }
        throw new TimeoutException($"port {port} was not ready within 30 s");
    }
}
