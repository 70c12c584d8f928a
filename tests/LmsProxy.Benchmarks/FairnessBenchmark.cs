using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using LmStudioSimulator;

namespace LmsProxy.Benchmarks;

/// <summary>
/// One GPU box shared by a team (issue 20): the simulator at parallel 2 with 300 ms answers, LmsProxy holding the
/// queue. (1) A batch key's 16 clients back to back, alone: its throughput. (2) The same with an interactive key
/// sending one request at a time (a person: a pause of 0.5 to 1 s between answers): the interactive key's wait in
/// the queue (the proxy's X-LmsProxy-Queue-Ms) and the batch key's share of its alone throughput. (3) Two normal
/// keys, 16 clients against 2, back to back: the small key's wait. (2) and (3) run in fair order (the default)
/// and in arrival order (LmsProxy:QueueOrder arrival: first come, first served, as LM Studio itself would).
/// </summary>
internal static class FairnessBenchmark
{
    private const string Model = "qwen/qwen3-8b";
    private const int AnswerMs = 300;
    private const int Parallel = 2;
    private static readonly Dictionary<string, string> Secrets = new()
    {
        ["nightly"] = "nightly-secret-0123456789", ["alice"] = "alice-secret-0123456789",
        ["agent"] = "agent-secret-0123456789", ["bob"] = "bob-secret-0123456789ab",
    };

    private sealed record Sample(string Key, double StartMs, double EndMs, double QueueMs, HttpStatusCode Status);

    public static async Task<bool> RunAsync(int seconds, StartProxy startProxy)
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(100), ResponseDelay = TimeSpan.FromMilliseconds(AnswerMs), Parallel = Parallel });
        var alone = await RunAsync(sim, "fair", seconds, startProxy, ("nightly", 16, false));
        var fair = await RunAsync(sim, "fair", seconds, startProxy, ("nightly", 16, false), ("alice", 1, true));
        var arrival = await RunAsync(sim, "arrival", seconds, startProxy, ("nightly", 16, false), ("alice", 1, true));
        var fairNormal = await RunAsync(sim, "fair", seconds, startProxy, ("agent", 16, false), ("bob", 2, false));
        var arrivalNormal = await RunAsync(sim, "arrival", seconds, startProxy, ("agent", 16, false), ("bob", 2, false));

        double Throughput(List<Sample> samples, string key) => samples.Count(s => s.Key == key && s.Status == HttpStatusCode.OK) / (double)seconds;
        double Wait(List<Sample> samples, string key, double fraction) => Stats.Percentile([.. samples.Where(s => s.Key == key).Select(s => s.QueueMs)], fraction);
        var aloneThroughput = Throughput(alone, "nightly");

        Console.WriteLine($"\n## Fairness: one box shared by several keys ({seconds} s per run, simulator parallel {Parallel}, {AnswerMs} ms answers, non-streaming)\n");
        Console.WriteLine($"Batch key alone (16 clients back to back): {aloneThroughput:0.00} answers/s (the box's most: {Parallel * 1000.0 / AnswerMs:0.00}).\n");
        Console.WriteLine("| run | order | interactive answers | interactive queue wait p50 / p95 / max ms | batch answers/s | batch share of alone | every answer 200 | LM Studio's peak queue |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var (name, samples) in new[] { ("batch 16 + interactive 1", fair), ("batch 16 + interactive 1", arrival) })
        {
            var order = ReferenceEquals(samples, fair) ? "fair" : "arrival";
            Console.WriteLine($"| {name} | {order} | {samples.Count(s => s.Key == "alice")} | {Wait(samples, "alice", 0.5):0} / {Wait(samples, "alice", 0.95):0} / {Wait(samples, "alice", 1):0} | " +
                              $"{Throughput(samples, "nightly"):0.00} | {Throughput(samples, "nightly") / aloneThroughput:P0} | {(samples.All(s => s.Status == HttpStatusCode.OK) ? "yes" : "no")} | {Parallel} |");
        }
        Console.WriteLine("\n| run | order | small key answers | small key queue wait p50 / p95 / max ms | big key answers/s | small key answers/s |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var (order, samples) in new[] { ("fair", fairNormal), ("arrival", arrivalNormal) })
        {
            Console.WriteLine($"| normal 16 + normal 2 | {order} | {samples.Count(s => s.Key == "bob")} | {Wait(samples, "bob", 0.5):0} / {Wait(samples, "bob", 0.95):0} / {Wait(samples, "bob", 1):0} | " +
                              $"{Throughput(samples, "agent"):0.00} | {Throughput(samples, "bob"):0.00} |");
        }
        var peak = sim.State.Instances().Max(i => i.PeakQueued);
        var checks = new (string Target, string Value, bool Pass)[]
        {
            ("fair: interactive p95 queue wait < one answer (300 ms)", $"{Wait(fair, "alice", 0.95):0} ms", Wait(fair, "alice", 0.95) < AnswerMs),
            ("fair: batch ≥ 70 % of its alone throughput", $"{Throughput(fair, "nightly") / aloneThroughput:P0}", Throughput(fair, "nightly") >= 0.7 * aloneThroughput),
            ("fair: small normal key p95 queue wait < two answers (600 ms)", $"{Wait(fairNormal, "bob", 0.95):0} ms", Wait(fairNormal, "bob", 0.95) < 2 * AnswerMs),
            ("LM Studio never had more than parallel requests (the proxy held the queue)", $"peak {peak}", peak <= Parallel),
            ("no 429 or other error while only the queue was long", $"{new[] { fair, arrival, fairNormal, arrivalNormal, alone }.Sum(s => s.Count(x => x.Status != HttpStatusCode.OK))} errors",
                new[] { fair, arrival, fairNormal, arrivalNormal, alone }.All(s => s.All(x => x.Status == HttpStatusCode.OK))),
        };
        Console.WriteLine("\n| target | measured | result |");
        Console.WriteLine("|---|---|---|");
        foreach (var (target, value, pass) in checks) Console.WriteLine($"| {target} | {value} | {(pass ? "PASS" : "FAIL")} |");
        return checks.All(c => c.Pass);
    }

    private static async Task<List<Sample>> RunAsync(SimulatorApp sim, string order, int seconds, StartProxy startProxy, params (string Key, int Clients, bool Person)[] load)
    {
        var port = Processes.FreePort();
        var settings = new Dictionary<string, string>
        {
            ["LmsProxy__Loader"] = "rest",
            ["LmsProxy__QueueOrder"] = order,
            ["LmsProxy__Keys__nightly__Priority"] = "batch",
            ["LmsProxy__Keys__alice__Priority"] = "interactive",
        };
        foreach (var (name, secret) in Secrets) settings[$"LmsProxy__Keys__{name}__Key"] = secret;
        var proxy = startProxy(port, sim.Url.GetLeftPart(UriPartial.Authority), settings);
        try
        {
            await Processes.WaitForHttp($"http://127.0.0.1:{port}/healthz");
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64 }) { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(2) };
            // Loaded and the path compiled before the clock starts.
            for (var i = 0; i < 4; i++) await SendAsync(http, "nightly", Stopwatch.StartNew());
            var clock = Stopwatch.StartNew();
            var deadline = TimeSpan.FromSeconds(seconds);
            var clients = load.SelectMany(l => Enumerable.Range(0, l.Clients).Select(c => Task.Run(async () =>
            {
                var random = new Random(c * 31 + l.Key.Length);
                var mine = new List<Sample>();
                while (clock.Elapsed < deadline)
                {
                    if (l.Person) await Task.Delay(500 + random.Next(500));
                    mine.Add(await SendAsync(http, l.Key, clock));
                }
                return mine;
            }))).ToList();
            return [.. (await Task.WhenAll(clients)).SelectMany(s => s)];
        }
        finally
        {
            proxy.Kill(entireProcessTree: true);
            await proxy.WaitForExitAsync();
        }
    }

    private static async Task<Sample> SendAsync(HttpClient http, string key, Stopwatch clock)
    {
        var start = clock.Elapsed.TotalMilliseconds;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Targets.Json($$"""{"model":"{{Model}}","messages":[{"role":"user","content":"hi"}]}""") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Secrets[key]);
        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        var queued = response.Headers.TryGetValues("X-LmsProxy-Queue-Ms", out var values) ? double.Parse(values.Single(), CultureInfo.InvariantCulture) : 0;
        return new Sample(key, start, clock.Elapsed.TotalMilliseconds, queued, response.StatusCode);
    }
}
