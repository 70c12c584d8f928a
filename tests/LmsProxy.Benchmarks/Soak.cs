using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using LmStudioSimulator;

namespace LmsProxy.Benchmarks;

/// <summary>
/// A bounded soak: several models, JIT off, random evictions, mixed streaming and plain requests from 8 clients.
/// Reports every status seen (any "not loaded" reaching a client is a failure) and LmsProxy's memory over time.
/// </summary>
internal static class Soak
{
    private static readonly string[] Models = ["qwen/qwen3-8b", "google/gemma-3-1b", "qwen/qwen3-8b-instruct"];

    public static async Task<int> RunAsync(int seconds, Func<int, string, Process> startLmsProxy)
    {
        await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromMilliseconds(300), TokenDelay = TimeSpan.FromMilliseconds(2) });
        var port = Processes.FreePort();
        var proxy = startLmsProxy(port, sim.Url.GetLeftPart(UriPartial.Authority));
        await Processes.WaitForHttp($"http://127.0.0.1:{port}/healthz");
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(2) };
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var outcomes = new ConcurrentDictionary<string, int>();
        var memory = new List<(double Seconds, double MiB)>();
        var clock = Stopwatch.StartNew();

        var evictions = 0;
        var evictor = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(Random.Shared.Next(300, 1500));
                sim.State.Evict(Models[Random.Shared.Next(Models.Length)]);
                Interlocked.Increment(ref evictions);
            }
        });
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                lock (memory) memory.Add((clock.Elapsed.TotalSeconds, Processes.RssMiB(proxy.Id)));
                try { await Task.Delay(TimeSpan.FromSeconds(10), stop.Token); } catch (OperationCanceledException) { }
            }
        });
        var clients = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var model = Models[Random.Shared.Next(Models.Length)];
                var stream = Random.Shared.Next(2) == 0;
                var body = $$"""{"model":"{{model}}","stream":{{(stream ? "true" : "false")}},"messages":[{"role":"user","content":"hi"}]}""";
                using var response = await http.PostAsync("/v1/chat/completions", Targets.Json(body));
                var text = await response.Content.ReadAsStringAsync();
                var ok = response.StatusCode == HttpStatusCode.OK && (!stream || text.EndsWith("data: [DONE]\n\n", StringComparison.Ordinal));
                outcomes.AddOrUpdate(ok ? "200 complete" : $"{(int)response.StatusCode} {text[..Math.Min(120, text.Length)]}", 1, (_, n) => n + 1);
            }
        })).ToList();
        await Task.WhenAll(clients);
        await evictor;
        await sampler;
        lock (memory) memory.Add((clock.Elapsed.TotalSeconds, Processes.RssMiB(proxy.Id)));

        Console.WriteLine($"\n## Soak: {seconds} s, 8 clients, {Models.Length} models, {evictions} random evictions, JIT off\n");
        foreach (var (outcome, count) in outcomes.OrderByDescending(o => o.Value)) Console.WriteLine($"- {count} × {outcome}");
        Console.WriteLine($"- LM Studio refused {sim.State.NotLoadedAnswers} requests as \"No models loaded\"; the proxy absorbed them; loads: {string.Join(", ", Models.Select(m => $"{m} {sim.State.LoadCount(m)}"))}");
        Console.WriteLine($"- LmsProxy RSS (MiB) over time: {string.Join(", ", memory.Select(m => $"{m.Seconds:0}s={m.MiB:0}"))}");
        proxy.Kill(entireProcessTree: true);
        return outcomes.Keys.All(k => k == "200 complete") ? 0 : 1;
    }
}
