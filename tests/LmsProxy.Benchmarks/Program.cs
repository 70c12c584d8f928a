using System.Diagnostics;
using System.Globalization;
using System.Net;
using LmStudioSimulator;
using LmsProxy.Benchmarks;

// dotnet run -c Release --project tests/LmsProxy.Benchmarks [-- --seconds 5 [--overhead-only] [--overhead-rounds 9] | --record-cost [--record-rounds 9] | --held-only | --soak 180
//     | --cold-path [--rounds 8] | --swap [--swap-seconds 30] [--swap-response-ms 200] | --simulate 100000 | --fairness [--seconds 5]
//     | --builds "jit=dotnet src/LmsProxy/bin/Release/net10.0/LmsProxy.dll" "aot=/path/to/native/LmsProxy" ...]
// The full run (no mode) needs Debian's nginx and wrk (apt-get install nginx wrk; strace for the system-call table); --cold-path needs curl (the fake
// lms uses it). Everything runs on loopback and stops by itself.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
// The bare YARP forwarder below gets the socket tuning LmsProxy applies to itself, so the two compare like for like.
Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
RunInfo.Print();
var seconds = ArgValue("--seconds") ?? 5;
var soak = ArgValue("--soak");
var coldRounds = ArgValue("--rounds") ?? 8;
var swapSeconds = ArgValue("--swap-seconds") ?? 30;
var swapResponseMs = ArgValue("--swap-response-ms") ?? SwapBenchmark.DefaultResponseMs;

using var processes = new Processes();
var lmsProxyDll = Path.Combine(AppContext.BaseDirectory, "LmsProxy.dll");

Process StartLmsProxy(int port, string upstream, IReadOnlyDictionary<string, string>? settings = null)
{
    var env = new Dictionary<string, string>
    {
        ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
        ["LmsProxy__Upstream"] = upstream,
        ["LmsProxy__Loader"] = "rest",
        // Measured like nginx with access_log off: the per-request log line is switched off (it is on by default).
        ["Logging__LogLevel__LmsProxy.Requests"] = "Warning",
        ["DOTNET_TieredPGO"] = "1",
        // Never the user's own store: memory only unless the caller gives a file.
        ["LmsProxy__State__Path"] = "",
    };
    foreach (var (key, value) in settings ?? new Dictionary<string, string>()) env[key] = value;
    return processes.Start("dotnet", [lmsProxyDll], env, workingDirectory: AppContext.BaseDirectory);
}

// --builds name=command ...: ways of starting LmsProxy (JIT, tool, Native AOT) against each other in one run (Builds.cs).
if (args.Contains("--builds")) return await Builds.RunAsync([.. args.SkipWhile(a => a != "--builds").Skip(1).Where(a => a.Contains('=', StringComparison.Ordinal))], seconds, processes);

// A bare YARP direct forwarder in a process of its own, started by the overhead run like LmsProxy (same runtime settings).
if (args.Length == 3 && args[0] == "--bare-yarp")
{
    await using var bare = await Targets.StartBareYarpAsync(int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture));
    await bare.WaitForShutdownAsync();
    return 0;
}

if (soak is { } soakSeconds) return await Soak.RunAsync(soakSeconds, (port, upstream) => StartLmsProxy(port, upstream));
if (ArgValue("--simulate") is { } seeds)
{
    // The placement policy's deterministic simulation (tests run 1,000 seeds; this runs as many as asked).
    var result = LmsProxy.Simulation.SimulationRun.Seeds(1, seeds);
    Console.WriteLine($"Simulation: {result.Seeds} seeds, {result.Events:N0} events, {result.InvariantChecks:N0} invariant checks, {result.Elapsed.TotalSeconds:0.0} s, {result.EventsPerSecond:N0} events/s");
    Console.WriteLine(result.Failure ?? "every invariant held");
    return result.Failure is null ? 0 : 1;
}
if (args.Contains("--held-only"))
{
    await HeldRequestsAsync();
    return 0;
}
if (args.Contains("--record-cost"))
{
    return await RecordCost.RunAsync(ArgValue("--seconds") ?? 3, ArgValue("--record-rounds") ?? 9, StartLmsProxy,
        new Dictionary<string, string> { ["DOTNET_TieredPGO"] = "1", ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "1" }) ? 0 : 1;
}
// --fairness: issue 20's proof, keys sharing one instance's parallel slots (fair order against arrival order).
if (args.Contains("--fairness")) return await FairnessBenchmark.RunAsync(ArgValue("--seconds") ?? 5, StartLmsProxy) ? 0 : 1;
if (args.Contains("--cold-path") || args.Contains("--swap"))
{
    var met = true;
    if (args.Contains("--cold-path")) met &= await ColdPath.RunAsync(coldRounds, StartLmsProxy);
    if (args.Contains("--swap")) met &= await SwapBenchmark.RunAsync(swapSeconds, swapResponseMs, StartLmsProxy);
    return met ? 0 : 1;
}

foreach (var tool in new[] { "nginx", "wrk" })
{
    if (!File.Exists($"/usr/sbin/{tool}") && !File.Exists($"/usr/bin/{tool}"))
    {
        Console.Error.WriteLine($"{tool} is needed: apt-get install nginx wrk");
        return 2;
    }
}
var work = Directory.CreateTempSubdirectory("lmsproxy-bench-").FullName;

// 1. The four targets. Bare YARP and LmsProxy run as processes of their own with the same runtime settings
// (--low-memory adds LmsProxy's memory settings to both).
var lowMemory = args.Contains("--low-memory");
var runtimeEnv = new Dictionary<string, string> { ["DOTNET_TieredPGO"] = "1", ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "1" };
if (lowMemory)
{
    foreach (var (name, value) in LmsProxy.Hosting.LowMemoryRuntime.Settings) runtimeEnv[name] = value;
}
else
{
    // LmsProxy gives itself the settings (it re-executes with them); the bare forwarder cannot: like for like.
    runtimeEnv["LMSPROXY_LOW_MEMORY"] = "0";
}
int upstreamPort = Processes.FreePort(), nginxPort = Processes.FreePort(), yarpPort = Processes.FreePort(), proxyPort = Processes.FreePort();
processes.Start("nginx", ["-c", Targets.UpstreamNginx(Path.Combine(work, "upstream"), upstreamPort)]);
processes.Start("nginx", ["-c", Targets.ProxyNginx(Path.Combine(work, "proxy"), nginxPort, upstreamPort)]);
var bareYarp = processes.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "LmsProxy.Benchmarks.dll"), "--bare-yarp", yarpPort.ToString(CultureInfo.InvariantCulture), upstreamPort.ToString(CultureInfo.InvariantCulture)],
    runtimeEnv, workingDirectory: AppContext.BaseDirectory);
var lmsProxy = StartLmsProxy(proxyPort, $"http://127.0.0.1:{upstreamPort}", new Dictionary<string, string>(runtimeEnv) { ["LmsProxy__State__Path"] = Path.Combine(work, "lmsproxy.db") });
foreach (var port in new[] { upstreamPort, nginxPort, yarpPort, proxyPort }) await Processes.WaitForHttp($"http://127.0.0.1:{port}/v1/models");
var targets = new (string Name, int Port)[] { ("direct", upstreamPort), ("nginx", nginxPort), ("bare YARP", yarpPort), ("LmsProxy", proxyPort) };
var idleMiB = Processes.RssMiB(lmsProxy.Id);
var bareIdleMiB = Processes.RssMiB(bareYarp.Id);

// .NET reaches its steady state only after tiered compilation and PGO have run: warm every target alike. 20 s: under
// 64 connections LmsProxy's JIT still compiled for 12-14 s (about 4,900 methods; dotnet-counters), so 10 s left the
// first rounds paying for it.
foreach (var (_, port) in targets) await Wrk.RunAsync($"http://127.0.0.1:{port}/v1/chat/completions", 64, TimeSpan.FromSeconds(20), Targets.ChatBody, work);

// 2. Small non-streaming requests at several concurrencies. Nine rounds (--overhead-rounds N), the targets interleaved
// in each, so that a passing disturbance of the machine touches all of them; the median round counts. (Rounds on this
// shared 2-core machine move by ±10%: the median of three moved by ±5% between runs, of five less.) Every other round
// runs the targets in the reverse order: bare YARP and LmsProxy stay next to each other, and neither always goes first
// (a drift of the machine within a round pair, or what one target leaves behind, falls on each alike).
var overheadRounds = ArgValue("--overhead-rounds") ?? 9;
var rounds = new Dictionary<(string, int), List<WrkResult>>();
var peak = new Dictionary<string, double> { ["LmsProxy"] = 0, ["bare YARP"] = 0 };
foreach (var connections in new[] { 1, 16, 64 })
{
    for (var round = 0; round < overheadRounds; round++)
    {
        foreach (var (name, port) in round % 2 == 0 ? targets : Enumerable.Reverse(targets))
        {
            var url = $"http://127.0.0.1:{port}/v1/chat/completions";
            if (round == 0) await Wrk.RunAsync(url, connections, TimeSpan.FromSeconds(2), Targets.ChatBody, work);
            using var sampler = new CancellationTokenSource();
            var pid = name switch { "LmsProxy" => lmsProxy.Id, "bare YARP" => bareYarp.Id, _ => 0 };
            var sampling = pid == 0 || connections != 64 ? Task.CompletedTask : Task.Run(async () =>
            {
                while (!sampler.IsCancellationRequested) { peak[name] = Math.Max(peak[name], Processes.RssMiB(pid)); await Task.Delay(200); }
            });
            var cpuBefore = pid == 0 ? 0 : Processes.CpuMicroseconds(pid);
            var result = await Wrk.RunAsync(url, connections, TimeSpan.FromSeconds(seconds), Targets.ChatBody, work);
            if (pid != 0) result = result with { CpuMicrosecondsPerRequest = (Processes.CpuMicroseconds(pid) - cpuBefore) / (result.RequestsPerSecond * seconds) };
            sampler.Cancel();
            await sampling;
            if (!rounds.TryGetValue((name, connections), out var list)) rounds[(name, connections)] = list = [];
            list.Add(result);
        }
    }
}
var results = rounds.ToDictionary(r => r.Key, r => r.Value.OrderBy(x => x.RequestsPerSecond).ElementAt(overheadRounds / 2));

// 3. Time to the first streamed event, one request at a time.
var firstEvent = new Dictionary<string, (double P50, double P99)>();
foreach (var (name, port) in targets) firstEvent[name] = await FirstEventAsync(port, 300);

Console.WriteLine($"\n## Proxy overhead (wrk, median of {overheadRounds} interleaved rounds of {seconds} s per cell, 2 cores, loopback; upstream: static nginx{(lowMemory ? "; --low-memory" : "")})\n");
Console.WriteLine("| connections | LmsProxy / bare YARP (each round) | LmsProxy / bare YARP (median) | LmsProxy / nginx | bare YARP / nginx | CPU µs per request: LmsProxy / bare YARP (medians) |");
Console.WriteLine("|---|---|---|---|---|---|");
foreach (var connections in new[] { 1, 16, 64 })
{
    var each = Enumerable.Range(0, overheadRounds).Select(i => rounds[("LmsProxy", connections)][i].RequestsPerSecond / rounds[("bare YARP", connections)][i].RequestsPerSecond).ToList();
    double Cpu(string name) => rounds[(name, connections)].Select(r => r.CpuMicrosecondsPerRequest).Order().ElementAt(overheadRounds / 2);
    Console.WriteLine($"| {connections} | {string.Join(", ", each.Select(r => r.ToString("0.00")))} | {each.Order().ElementAt(overheadRounds / 2):0.00} | " +
        $"{results[("LmsProxy", connections)].RequestsPerSecond / results[("nginx", connections)].RequestsPerSecond:0.00} | {results[("bare YARP", connections)].RequestsPerSecond / results[("nginx", connections)].RequestsPerSecond:0.00} | " +
        $"{Cpu("LmsProxy"):0.0} / {Cpu("bare YARP"):0.0} |");
}
await SyscallsAsync([("bare YARP", yarpPort, bareYarp.Id), ("LmsProxy", proxyPort, lmsProxy.Id)], work);
Console.WriteLine();
Console.WriteLine("| connections | target | req/s | ratio to nginx | ratio to direct | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
foreach (var connections in new[] { 1, 16, 64 })
{
    var direct = results[("direct", connections)];
    var nginx = results[("nginx", connections)];
    foreach (var (name, _) in targets)
    {
        var r = results[(name, connections)];
        Console.WriteLine($"| {connections} | {name} | {r.RequestsPerSecond:0} | {r.RequestsPerSecond / nginx.RequestsPerSecond:0.00} | {r.RequestsPerSecond / direct.RequestsPerSecond:0.00} | {r.P50Ms:0.000} | {r.P99Ms:0.000} | {(name == "direct" ? "" : (r.P50Ms - direct.P50Ms).ToString("0.000"))} | {(name == "direct" ? "" : (r.P99Ms - direct.P99Ms).ToString("0.000"))} | {r.Errors} |");
    }
}
Console.WriteLine("\n## Time to first streamed event (300 sequential requests)\n");
Console.WriteLine("| target | p50 ms | p99 ms | added p50 ms | added p99 ms |");
Console.WriteLine("|---|---|---|---|---|");
foreach (var (name, _) in targets)
{
    var (p50, p99) = firstEvent[name];
    Console.WriteLine($"| {name} | {p50:0.000} | {p99:0.000} | {(name == "direct" ? "" : (p50 - firstEvent["direct"].P50).ToString("0.000"))} | {(name == "direct" ? "" : (p99 - firstEvent["direct"].P99).ToString("0.000"))} |");
}

Console.WriteLine($"\nMemory (RSS): LmsProxy idle {idleMiB:0} MiB, peak at 64 connections {peak["LmsProxy"]:0} MiB; bare YARP idle {bareIdleMiB:0} MiB, peak {peak["bare YARP"]:0} MiB.");
Directory.Delete(work, recursive: true);
if (args.Contains("--overhead-only")) return 0;

// 4. Held requests: release after the load, and memory while 1,000 wait.
await HeldRequestsAsync();

// 5. What a cold request costs beyond the load, and two models that do not fit together.
await ColdPath.RunAsync(coldRounds, StartLmsProxy);
await SwapBenchmark.RunAsync(swapSeconds, swapResponseMs, StartLmsProxy);
return 0;

async Task HeldRequestsAsync()
{
    Console.WriteLine("\n## Held requests (LM Studio simulator, REST loader, 3 s load)\n");
    Console.WriteLine("| burst | answered after load completion: median ms | p99 ms | worst ms | LmsProxy RSS while held (MiB) | all answered |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var burst in new[] { 50, 1000 }) await HeldBurstAsync(burst);
}

async Task<(double, double)> FirstEventAsync(int port, int count)
{
    using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    var times = new List<double>();
    for (var i = 0; i < count + 20; i++)
    {
        var watch = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Targets.Json(Targets.StreamBody) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var line = await reader.ReadLineAsync();
        watch.Stop();
        if (line?.StartsWith("data:", StringComparison.Ordinal) != true) throw new InvalidOperationException($"no event from port {port}: {line}");
        if (i >= 20) times.Add(watch.Elapsed.TotalMilliseconds);
    }
    times.Sort();
    return (times[times.Count / 2], times[(int)(times.Count * 0.99)]);
}

async Task HeldBurstAsync(int burst)
{
    await using var sim = await SimulatorApp.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(3), DuplicateInstanceBug = false });
    var port = Processes.FreePort();
    var proxy = StartLmsProxy(port, sim.Url.GetLeftPart(UriPartial.Authority));
    await Processes.WaitForHttp($"http://127.0.0.1:{port}/healthz");
    using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 4096 }) { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(2) };
    // Warm the proxy first as a running proxy is warm: one cold load of another model through it (JIT of the
    // load path, in the proxy and the simulator), then rounds of requests (a pool of connections to LM Studio).
    // This measures the gate's release, not process start-up.
    for (var round = 0; round < 20; round++)
    {
        await Task.WhenAll(Enumerable.Range(0, Math.Min(burst, 100)).Select(async _ =>
        {
            using var warm = await http.PostAsync("/v1/chat/completions", Targets.Json("""{"model":"google/gemma-3-1b","messages":[]}"""));
        }));
    }
    var body = """{"model":"qwen/qwen3-8b","messages":[{"role":"user","content":"hi"}]}""";
    var answered = new long[burst];
    var requests = Enumerable.Range(0, burst).Select(async i =>
    {
        using var response = await http.PostAsync("/v1/chat/completions", Targets.Json(body));
        await response.Content.ReadAsByteArrayAsync();
        answered[i] = Stopwatch.GetTimestamp();

        return response.StatusCode;
    }).ToList();
    double heldMiB = 0;
    while (sim.State.LoadCount("qwen/qwen3-8b") == 0)
    {
        heldMiB = Math.Max(heldMiB, Processes.RssMiB(proxy.Id));
        await Task.Delay(100);
    }
    var statuses = await Task.WhenAll(requests);
    var loaded = sim.State.LastLoadCompletedTimestamp;
    var release = answered.Select(t => Stopwatch.GetElapsedTime(loaded, t).TotalMilliseconds).Order().ToList();
    Console.WriteLine($"| {burst} | {release[release.Count / 2]:0.0} | {release[(int)(release.Count * 0.99)]:0.0} | {release[^1]:0.0} | {heldMiB:0} | {statuses.All(s => s == HttpStatusCode.OK)} ({sim.State.LoadCount("qwen/qwen3-8b")} load) |");
    proxy.Kill(entireProcessTree: true);
}

// System calls per request at 64 connections, counted by strace (when installed): what each proxy asks of the kernel,
// which is most of a small request's cost on loopback.
static async Task SyscallsAsync((string Name, int Port, int Pid)[] proxies, string work)
{
    if (!File.Exists("/usr/bin/strace")) return;
    Console.WriteLine("\n## System calls per request (64 connections, strace -c -f)\n");
    Console.WriteLine("| target | sendto | recvfrom | epoll_wait | all |");
    Console.WriteLine("|---|---|---|---|---|");
    foreach (var (name, port, pid) in proxies)
    {
        var output = Path.Combine(work, $"strace-{pid}.txt");
        using var strace = Process.Start(new ProcessStartInfo("strace", ["-f", "-c", "-o", output, "-p", pid.ToString(CultureInfo.InvariantCulture)]) { RedirectStandardError = true })!;
        await Task.Delay(500);
        var result = await Wrk.RunAsync($"http://127.0.0.1:{port}/v1/chat/completions", 64, TimeSpan.FromSeconds(3), Targets.ChatBody, work);
        Process.Start("kill", ["-INT", strace.Id.ToString(CultureInfo.InvariantCulture)]).WaitForExit();
        await strace.WaitForExitAsync();
        var requests = result.RequestsPerSecond * 3;
        var calls = File.ReadLines(output).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 5 && long.TryParse(f[3], out _)).ToDictionary(f => f[^1], f => long.Parse(f[3], CultureInfo.InvariantCulture));
        double Per(string call) => calls.GetValueOrDefault(call) / requests;
        Console.WriteLine($"| {name} | {Per("sendto"):0.00} | {Per("recvfrom"):0.00} | {Per("epoll_wait"):0.00} | {calls.Where(c => c.Key != "total").Sum(c => c.Value) / requests:0.00} |");
    }
}

int? ArgValue(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : null;
