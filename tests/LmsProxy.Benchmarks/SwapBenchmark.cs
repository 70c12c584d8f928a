using System.Diagnostics;
using System.Net;
using LmStudioSimulator;

namespace LmsProxy.Benchmarks;

/// <summary>
/// Two models that do not fit together, both in demand (issue "No swap thrash"): 8 clients, 4 per model, send chat
/// requests back to back. "auto" is the default (MaxSwapWait auto: a bound from the two models' load times, and a model
/// stays that long once loaded); "20 s" is the old default; "FIFO" (MaxSwapWait 0) swaps as soon as the other model
/// waits. Each run has its own simulator and proxy. The goals (issue 16) are for the default.
/// </summary>
internal static class SwapBenchmark
{
    /// <summary>How long the simulator takes to answer a non-streaming request: an answer takes time, so a model is busy.</summary>
    public const int DefaultResponseMs = 200;

    private static readonly TimeSpan LoadTime = TimeSpan.FromSeconds(1.5);
    /// <summary>The default's goal for the longest wait of any request.</summary>
    private static readonly TimeSpan AutoLongestWait = TimeSpan.FromSeconds(8);
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(1);
    private const string ModelA = "qwen/qwen3-8b";
    private const string ModelB = "google/gemma-3-1b";
    private const int ClientsPerModel = 4;

    /// <param name="Error">The start of the answer when it was not a 200.</param>
    private sealed record Request(string Model, double StartMs, double EndMs, HttpStatusCode Status, string? Error = null)
    {
        public double LatencyMs => EndMs - StartMs;
    }

    private sealed record Run(string Name, string MaxSwapWait, IReadOnlyList<Request> Requests, double Seconds, int Loads, int CutOff, int RefusedLoads, int NotLoaded)
    {
        public int Ok => Requests.Count(r => r.Status == HttpStatusCode.OK);

        /// <summary>Answered (200) requests per load: an error answered at once is no work done.</summary>
        public double PerLoad => Loads == 0 ? double.NaN : (double)Ok / Loads;

        /// <summary>Answered (200) requests per second.</summary>
        public double Throughput => Ok / Seconds;

        /// <summary>auto: the goal; a fixed bound: the bound, one load and a second of slack.</summary>
        public double Bound => TimeSpan.TryParse(MaxSwapWait, System.Globalization.CultureInfo.InvariantCulture, out var bound)
            ? (bound + LoadTime + Slack).TotalMilliseconds
            : AutoLongestWait.TotalMilliseconds;

        /// <summary>Latency of the answered (200) requests.</summary>
        public double Latency(double fraction) => Stats.Percentile(Requests.Where(r => r.Status == HttpStatusCode.OK).Select(r => r.LatencyMs).ToList(), fraction);

        /// <summary>The longest any request waited for its answer, whatever the answer.</summary>
        public double LongestWait => Requests.Count == 0 ? double.NaN : Requests.Max(r => r.LatencyMs);
    }

    public static async Task<bool> RunAsync(int seconds, int responseMs, StartProxy startProxy)
    {
        var models = SimulatorOptions.DefaultModels();
        long SizeOf(string key) => models.Single(m => m.Key == key).SizeBytes;
        // Room for either model alone, not for both: the larger one and half the smaller one.
        var budget = Math.Max(SizeOf(ModelA), SizeOf(ModelB)) + Math.Min(SizeOf(ModelA), SizeOf(ModelB)) / 2;
        var grouped = await RunOnceAsync("auto (default)", "auto", seconds, responseMs, budget, startProxy);
        var old = await RunOnceAsync("20 s (the old default)", "00:00:20", seconds, responseMs, budget, startProxy);
        var fifo = await RunOnceAsync("FIFO", "00:00:00", seconds, responseMs, budget, startProxy);

        Console.WriteLine($"\n## Swap: two models that do not fit together ({seconds} s per run, {ClientsPerModel * 2} clients, {ClientsPerModel} per model, back to back, non-streaming)\n");
        Console.WriteLine($"Simulator: load {LoadTime.TotalMilliseconds:0} ms, answer {responseMs} ms, parallel 4, memory budget {budget / 1e9:0.00} GB " +
                          $"({ModelA} {SizeOf(ModelA) / 1e9:0.00} GB, {ModelB} {SizeOf(ModelB) / 1e9:0.00} GB). " +
                          "LmsProxy: REST loader, Capacity:MaxLoadedModels=1, HoldTimeout 2 min.\n");
        Console.WriteLine("| run | MaxSwapWait | requests | status 200 | loads | 200s per load | 200s per s | p50 ms | p99 ms | max ms | longest wait, any status, ms | bound (auto: the 8 s goal; else MaxSwapWait + load + 1 s) | within bound | cut off by an unload | loads refused by LM Studio | \"not loaded\" answers |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var run in new[] { grouped, old, fifo })
        {
            Console.WriteLine($"| {run.Name} | {run.MaxSwapWait} | {run.Requests.Count} | {run.Ok} | {run.Loads} | {run.PerLoad:0.0} | {run.Throughput:0.0} | " +
                              $"{run.Latency(0.5):0} | {run.Latency(0.99):0} | {run.Latency(1):0} | {run.LongestWait:0} | {run.Bound:0} | {(run.LongestWait <= run.Bound ? "yes" : "no")} | {run.CutOff} | {run.RefusedLoads} | {run.NotLoaded} |");
        }
        foreach (var run in new[] { grouped, old, fifo })
        {
            var longest = run.Requests.MaxBy(r => r.LatencyMs)!;
            Console.WriteLine($"- {run.Name}: the longest wait, {longest.LatencyMs:0} ms, was a request for {longest.Model} sent at {longest.StartMs / 1000:0.0} s");
        }
        var throughputRatio = grouped.Throughput / fifo.Throughput;
        var perLoadRatio = grouped.PerLoad / fifo.PerLoad;
        Console.WriteLine($"\nauto / FIFO: throughput {throughputRatio:0.0}×, requests per load {perLoadRatio:0.0}×; auto / 20 s: longest wait {grouped.LongestWait / old.LongestWait:0.00}×\n");

        var checks = new (string Target, string Value, bool Pass)[]
        {
            ("auto: ≥ 8 requests (200s) per load", $"{grouped.PerLoad:0.0}", grouped.PerLoad >= 8),
            ("auto: ≥ 5× FIFO throughput (200s per s)", $"{throughputRatio:0.0}×", throughputRatio >= 5),
            ("auto: longest wait of any request < 8 s", $"{grouped.LongestWait:0} ms", grouped.LongestWait < AutoLongestWait.TotalMilliseconds),
            ("both: every request 200, none cut off by an unload", $"{grouped.Ok + fifo.Ok} of {grouped.Requests.Count + fifo.Requests.Count}, {grouped.CutOff + fifo.CutOff} cut off",
                grouped.Ok == grouped.Requests.Count && fifo.Ok == fifo.Requests.Count && grouped.CutOff + fifo.CutOff == 0),
        };
        Console.WriteLine("| target | measured | result |");
        Console.WriteLine("|---|---|---|");
        foreach (var (target, value, pass) in checks) Console.WriteLine($"| {target} | {value} | {(pass ? "PASS" : "FAIL")} |");
        foreach (var run in new[] { grouped, old, fifo })
        {
            foreach (var group in run.Requests.Where(r => r.Status != HttpStatusCode.OK).GroupBy(r => (r.Model, r.Status)))
            {
                Console.WriteLine($"- {run.Name}: {group.Count()} × {(int)group.Key.Status} for {group.Key.Model}, first at {group.Min(r => r.StartMs) / 1000:0.0} s: {group.First().Error}");
            }
        }
        return checks.All(c => c.Pass);
    }

    private static async Task<Run> RunOnceAsync(string name, string maxSwapWait, int seconds, int responseMs, long budget, StartProxy startProxy)
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions
        {
            LoadTime = LoadTime,
            MemoryBudgetBytes = budget,
            ResponseDelay = TimeSpan.FromMilliseconds(responseMs),
        });
        var port = Processes.FreePort();
        var proxy = startProxy(port, sim.Url.GetLeftPart(UriPartial.Authority), new Dictionary<string, string>
        {
            ["LmsProxy__Loader"] = "rest",
            ["LmsProxy__Capacity__MaxLoadedModels"] = "1",
            ["LmsProxy__Capacity__MaxSwapWait"] = maxSwapWait,
            ["LmsProxy__HoldTimeout"] = "00:02:00",
        });
        try
        {
            await Processes.WaitForHttp($"http://127.0.0.1:{port}/healthz");
            await Task.Delay(TimeSpan.FromSeconds(1)); // the start-up read of LM Studio's model list
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64 })
            {
                BaseAddress = new Uri($"http://127.0.0.1:{port}"),
                Timeout = TimeSpan.FromMinutes(3),
            };
            // A running proxy is warm: one load, request and unload of a third model first (JIT of the whole path), so the
            // waits measured are the scheduler's, not a fresh process's first-time compilation.
            using (await http.PostAsync("/v1/embeddings", new StringContent("""{"model":"text-embedding-nomic-embed-text-v1.5","input":"warm"}""", System.Text.Encoding.UTF8, "application/json"))) { }
            using (var unload = new HttpRequestMessage(HttpMethod.Post, "/models/text-embedding-nomic-embed-text-v1.5/unload"))
            {
                unload.Headers.Add("X-LmsProxy-Action", "1");
                using (await http.SendAsync(unload)) { }
            }
            while (sim.State.Instances().Count > 0) await Task.Delay(50);
            var clock = Stopwatch.StartNew();
            var deadline = TimeSpan.FromSeconds(seconds);
            var clients = Enumerable.Range(0, ClientsPerModel * 2).Select(i => Task.Run(async () =>
            {
                var model = i < ClientsPerModel ? ModelA : ModelB;
                var body = $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}]}""";
                var mine = new List<Request>();
                while (clock.Elapsed < deadline)
                {
                    var start = clock.Elapsed.TotalMilliseconds;
                    HttpStatusCode status;
                    string? error = null;
                    try
                    {
                        using var response = await http.PostAsync("/v1/chat/completions", Targets.Json(body));
                        var text = await response.Content.ReadAsStringAsync();
                        status = response.StatusCode;
                        if (status != HttpStatusCode.OK) error = text[..Math.Min(200, text.Length)];
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        status = 0; // the connection broke (an unload cut the request off) or the client timed out
                        error = e.Message;
                    }
                    mine.Add(new Request(model, start, clock.Elapsed.TotalMilliseconds, status, error));
                    // A client that got an error pauses before it asks again, so that a storm of quick errors does not
                    // take the CPU the proxy and the simulator need (every error already fails the run).
                    if (status != HttpStatusCode.OK) await Task.Delay(100);
                }
                return mine;
            })).ToList();
            var requests = (await Task.WhenAll(clients)).SelectMany(r => r).ToList();
            var elapsed = clock.Elapsed.TotalSeconds;
            return new Run(name, maxSwapWait, requests, elapsed, sim.State.LoadCount(ModelA) + sim.State.LoadCount(ModelB),
                sim.State.CutOffRequests, sim.State.RefusedLoads, sim.State.NotLoadedAnswers);
        }
        finally
        {
            proxy.Kill(entireProcessTree: true);
            await proxy.WaitForExitAsync();
        }
    }
}
