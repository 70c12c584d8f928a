using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using LmStudioSimulator;

namespace LmsProxy.Benchmarks;

/// <summary>
/// What a cold request pays beyond the load itself, with each loader (issue "A cold request pays for four lms
/// processes"). A simulated LM Studio with a 1.5 s load and JIT off; for the lms loader the fake lms, which costs a
/// Node-like start per run. Each round evicts one model, lets the proxy's 200 ms refresh notice it, then times one
/// non-streaming chat request for it from send to the last byte. Overhead = answer − load time.
/// </summary>
internal static partial class ColdPath
{
    private static readonly TimeSpan LoadTime = TimeSpan.FromSeconds(1.5);

    /// <summary>The simulator's three LLMs; the rounds rotate over them, so each round's model is loaded afresh.</summary>
    private static readonly string[] Models = ["qwen/qwen3-8b", "google/gemma-3-1b", "qwen/qwen3-8b-instruct"];

    /// <summary>REST's target: what a cold request may add to the load.</summary>
    private const double RestBudgetMs = 50;

    private sealed record Round(double AnswerMs, double BeforeLoadEndMs, double AfterLoadEndMs, int LmsRuns, bool Cold, HttpStatusCode Status);

    private sealed record Row(string Loader, double TargetMs, IReadOnlyList<Round> Rounds);

    public static async Task<bool> RunAsync(int rounds, StartProxy startProxy)
    {
        var lmsStartMs = FakeLmsStartMs(FakeLmsScript(), out var startNote);
        var (lmsRounds, fakeLmsRunMs) = await MeasureAsync("lms", rounds, lmsStartMs, startNote, startProxy);
        var (restRounds, _) = await MeasureAsync("rest", rounds, lmsStartMs, startNote, startProxy);
        var rows = new List<Row> { new("lms", lmsStartMs + RestBudgetMs, lmsRounds), new("rest", RestBudgetMs, restRounds) };

        Console.WriteLine($"\n## Cold request beyond the load ({rounds} rounds per loader; simulator: load {LoadTime.TotalMilliseconds:0} ms, JIT off; fake lms: {lmsStartMs:0} ms start per run{startNote})\n");
        Console.WriteLine("| loader | load ms (median) | answer ms (median) | overhead ms (median, p90) | of which before / after the load's end (median ms) | lms runs per load | target: overhead (median) | result |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        var met = true;
        foreach (var row in rows)
        {
            var answers = row.Rounds.Select(r => r.AnswerMs).ToList();
            var overheads = row.Rounds.Select(r => r.AnswerMs - LoadTime.TotalMilliseconds).ToList();
            var allOk = row.Rounds.All(r => r.Status == HttpStatusCode.OK && r.Cold);
            var pass = allOk && Stats.Percentile(overheads, 0.5) < row.TargetMs;
            met &= pass;
            var target = row.Loader == "lms" ? $"< one lms start + {RestBudgetMs:0} = {row.TargetMs:0} ms" : $"< {row.TargetMs:0} ms";
            Console.WriteLine($"| {row.Loader} | {LoadTime.TotalMilliseconds:0} | {Stats.Percentile(answers, 0.5):0} | {Stats.Percentile(overheads, 0.5):0}, {Stats.Percentile(overheads, 0.9):0} | " +
                              $"{Stats.Percentile(row.Rounds.Select(r => r.BeforeLoadEndMs).ToList(), 0.5):0} / {Stats.Percentile(row.Rounds.Select(r => r.AfterLoadEndMs).ToList(), 0.5):0} | " +
                              $"{row.Rounds.Average(r => r.LmsRuns):0.#} | {target} | {(pass ? "PASS" : "FAIL")} |");
        }
        Console.WriteLine($"\nLoad ms is the simulator's configured load time (it records when a load ends, not when it starts), so the overhead also holds the simulator's own timer slack. " +
                          $"\"Before the load's end\" is send → load done − {LoadTime.TotalMilliseconds:0} ms (lms starts, catalog reads, the load call); \"after\" is load done → last byte (the check after the load, the release, forwarding). " +
                          "lms runs per load: lines the fake lms added to calls.log during the round. " +
                          $"One fake lms run costs {fakeLmsRunMs:0} ms beyond its START_MS here (bash, curl, grep, awk, base64; `lms ps` with START_MS=0, median of 5, before the proxy starts): that is in the lms row's overhead too.");
        foreach (var row in rows)
        {
            var odd = row.Rounds.Select((r, i) => (r, i)).Where(x => x.r.Status != HttpStatusCode.OK || !x.r.Cold).ToList();
            foreach (var (r, i) in odd)
            {
                Console.WriteLine($"- {row.Loader}, round {i + 1}: {(int)r.Status}{(r.Cold ? "" : ", not a plain cold load: LM Studio answered \"not loaded\" first or no load happened")}");
            }
        }
        return met;
    }

    private static async Task<(IReadOnlyList<Round> Rounds, double FakeLmsRunMs)> MeasureAsync(string loader, int rounds, double lmsStartMs, string startNote, StartProxy startProxy)
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = LoadTime, Jit = false });
        var simUrl = sim.Url.GetLeftPart(UriPartial.Authority);
        var dir = Directory.CreateTempSubdirectory("lmsproxy-cold-").FullName;
        var calls = Path.Combine(dir, "calls.log");
        var fakeLmsRunMs = 0.0;
        var settings = new Dictionary<string, string>
        {
            ["LmsProxy__Loader"] = loader,
            // Refreshes read LM Studio's REST model list (never lms): this one notices an eviction within 200 ms, so
            // the measured request takes the cold path, not the "not loaded, load and re-send" path.
            ["LmsProxy__RefreshInterval"] = "00:00:00.200",
        };
        if (loader == "lms")
        {
            var lms = Path.Combine(dir, "lms");
            File.Copy(FakeLmsScript(), lms);
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(lms, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            // START_MS is left at the script's default (the real lms's Node start) unless the script has none.
            File.WriteAllText(Path.Combine(dir, "fake-lms.env"), $"SIM_URL={simUrl}\n{(startNote.Length > 0 ? $"START_MS={lmsStartMs:0}\n" : "")}");
            settings["LmsProxy__Lms__Path"] = lms;
            fakeLmsRunMs = await FakeLmsRunMsAsync(lms);
        }
        var port = Processes.FreePort();
        var proxy = startProxy(port, simUrl, settings);
        try
        {
            await Processes.WaitForHttp($"http://127.0.0.1:{port}/healthz");
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(1) };
            using var control = new HttpClient { BaseAddress = sim.Url };
            // Let the start-up reads finish (with lms: its `lms ls` of the model paths), then one cold load and request
            // of a model the first round does not use, so the cold path has been compiled.
            await Task.Delay(TimeSpan.FromSeconds(2));
            using (var warm = await http.PostAsync("/v1/chat/completions", Targets.Json(Body(Models[0]))))
            {
                await warm.Content.ReadAsByteArrayAsync();
                if (warm.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"warm-up request with the {loader} loader got {(int)warm.StatusCode}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500));

            var results = new List<Round>();
            for (var round = 0; round < rounds; round++)
            {
                var model = Models[(round + 1) % Models.Length];
                var runsBefore = Lines(calls);
                using (var evicted = await control.PostAsync($"/_sim/evict?model={Uri.EscapeDataString(model)}", null)) evicted.EnsureSuccessStatusCode();
                await Task.Delay(TimeSpan.FromMilliseconds(500));
                var loadsBefore = sim.State.LoadCount(model);
                var notLoadedBefore = sim.State.NotLoadedAnswers;

                var sent = Stopwatch.GetTimestamp();
                using var response = await http.PostAsync("/v1/chat/completions", Targets.Json(Body(model)));
                await response.Content.ReadAsByteArrayAsync();
                var done = Stopwatch.GetTimestamp();

                var loadDone = sim.State.LastLoadCompletedTimestamp;
                var cold = sim.State.LoadCount(model) == loadsBefore + 1 && sim.State.NotLoadedAnswers == notLoadedBefore;
                // lms runs the proxy starts after answering (none expected) still count for this load.
                await Task.Delay(TimeSpan.FromMilliseconds(500));
                results.Add(new Round(
                    Stopwatch.GetElapsedTime(sent, done).TotalMilliseconds,
                    Stopwatch.GetElapsedTime(sent, loadDone).TotalMilliseconds - LoadTime.TotalMilliseconds,
                    Stopwatch.GetElapsedTime(loadDone, done).TotalMilliseconds,
                    Lines(calls) - runsBefore,
                    cold,
                    response.StatusCode));
            }
            return (results, fakeLmsRunMs);
        }
        finally
        {
            proxy.Kill(entireProcessTree: true);
            await proxy.WaitForExitAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>What one run of the fake lms costs without its simulated start: the median of 5 `lms ps --json` with START_MS=0.</summary>
    private static async Task<double> FakeLmsRunMsAsync(string lms)
    {
        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var info = new ProcessStartInfo(lms, ["ps", "--json"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            info.Environment["START_MS"] = "0";
            var started = Stopwatch.GetTimestamp();
            using var process = Process.Start(info)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (process.ExitCode != 0) throw new InvalidOperationException($"the fake lms failed: {await error}{await output}");
        }
        return Stats.Percentile(times, 0.5);
    }

    private static string Body(string model) => $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}]}""";

    private static int Lines(string file) => File.Exists(file) ? File.ReadAllLines(file).Length : 0;

    /// <summary>The fake lms next to the benchmark (the simulator project copies it there), else in the repository.</summary>
    private static string FakeLmsScript()
    {
        var copied = Path.Combine(AppContext.BaseDirectory, "fake-lms", "lms");
        if (File.Exists(copied)) return copied;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var inRepo = Path.Combine(dir.FullName, "tests", "LmStudioSimulator", "fake-lms", "lms");
            if (File.Exists(inRepo)) return inRepo;
        }
        throw new FileNotFoundException("tests/LmStudioSimulator/fake-lms/lms not found");
    }

    /// <summary>The start cost the fake lms pays per run by default; 250 ms (and a note) when the script has no default.</summary>
    private static double FakeLmsStartMs(string script, out string note)
    {
        var match = StartMsDefault().Match(File.ReadAllText(script));
        note = match.Success ? "" : " (START_MS=250 written to fake-lms.env: the script has no default)";
        return match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 250;
    }

    [GeneratedRegex(@"START_MS=\$\{START_MS:-(\d+)\}")]
    private static partial Regex StartMsDefault();
}

internal static class Stats
{
    /// <summary>Nearest-rank percentile (0.5: median, 0.9: p90) of the values; NaN for none.</summary>
    public static double Percentile(IReadOnlyList<double> values, double fraction)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(fraction * sorted.Count) - 1, 0, sorted.Count - 1)];
    }
}
