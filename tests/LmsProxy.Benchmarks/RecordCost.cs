using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;

namespace LmsProxy.Benchmarks;

/// <summary>
/// What the activity record costs on the warm path: two LmsProxy processes in front of the static nginx upstream, one
/// with the record and its store (LmsProxy:State:Path a file), one without (LmsProxy:Activity:Enabled=false, memory
/// only), measured in the same run in interleaved rounds, whole bodies and streams at 1, 16 and 64 connections. Then
/// resident memory once the store holds 100,000 records. The goal: at least 0.95 of the requests per second, and
/// less than 10 MiB more memory.
/// </summary>
internal static class RecordCost
{
    /// <param name="rounds">Interleaved rounds per cell, the median counts (--record-rounds; single rounds here move by ±10-20%).</param>
    public static async Task<bool> RunAsync(int seconds, int rounds, Func<int, string, IReadOnlyDictionary<string, string>?, Process> startLmsProxy, Dictionary<string, string> runtimeEnv)
    {
        var work = Directory.CreateTempSubdirectory("lmsproxy-record-").FullName;
        using var processes = new Processes();
        var upstreamPort = Processes.FreePort();
        processes.Start("nginx", ["-c", Targets.UpstreamNginx(Path.Combine(work, "upstream"), upstreamPort)]);
        var upstream = $"http://127.0.0.1:{upstreamPort}";
        var store = Path.Combine(work, "lmsproxy.db");
        int onPort = Processes.FreePort(), memoryPort = Processes.FreePort(), offPort = Processes.FreePort();
        var on = startLmsProxy(onPort, upstream, new Dictionary<string, string>(runtimeEnv) { ["LmsProxy__State__Path"] = store, ["LmsProxy__State__ActivityMaxRows"] = "1000000" });
        var memory = startLmsProxy(memoryPort, upstream, new Dictionary<string, string>(runtimeEnv) { ["LmsProxy__State__Path"] = "" });
        var off = startLmsProxy(offPort, upstream, new Dictionary<string, string>(runtimeEnv) { ["LmsProxy__Activity__Enabled"] = "false", ["LmsProxy__State__Path"] = "" });
        foreach (var port in new[] { upstreamPort, onPort, memoryPort, offPort }) await Processes.WaitForHttp($"http://127.0.0.1:{port}/v1/models");
        var targets = new (string Name, int Port)[] { ("on", onPort), ("memory", memoryPort), ("off", offPort) };
        var pids = new Dictionary<string, int> { ["on"] = on.Id, ["memory"] = memory.Id, ["off"] = off.Id };
        var bodies = new (string Name, string Path, string Body)[] { ("whole body", "/v1/chat/completions", Targets.ChatBody), ("stream", "/v1/completions", Targets.StreamBody) };

        foreach (var (_, port) in targets)
        {
            // 10 s per body, 20 s in all: under 64 connections the JIT compiles for 12-14 s (see the overhead benchmark).
            foreach (var (_, path, body) in bodies) await Wrk.RunAsync($"http://127.0.0.1:{port}{path}", 64, TimeSpan.FromSeconds(10), body, work);
        }
        var met = true;
        Console.WriteLine($"\n## The activity record's cost (wrk, median of {rounds} interleaved rounds of {seconds} s, record on with its SQLite store vs off)\n");
        Console.WriteLine("on: the record and its SQLite store; memory: the record, no store file; off: LmsProxy:Activity:Enabled=false.\n");
        Console.WriteLine("| request | connections | req/s on / memory / off | on / off (each round) | on / off (median) | memory / off (median) | CPU µs per request on / memory / off | off / on CPU | p99 ms on / off |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (bodyName, path, body) in bodies)
        {
            foreach (var connections in new[] { 1, 16, 64 })
            {
                var results = new Dictionary<string, List<WrkResult>> { ["on"] = [], ["memory"] = [], ["off"] = [] };
                for (var round = 0; round < rounds; round++)
                {
                    // Alternate which goes first, so that neither always runs on a warmer machine.
                    foreach (var (name, port) in round % 2 == 0 ? targets : targets.Reverse())
                    {
                        // CPU per request as well: on a machine shared with other work, req/s swing with the neighbours, CPU time much less.
                        var pid = pids[name];
                        var cpuBefore = Processes.CpuMicroseconds(pid);
                        var result = await Wrk.RunAsync($"http://127.0.0.1:{port}{path}", connections, TimeSpan.FromSeconds(seconds), body, work);
                        results[name].Add(result with { CpuMicrosecondsPerRequest = (Processes.CpuMicroseconds(pid) - cpuBefore) / (result.RequestsPerSecond * seconds) });
                    }
                }
                var ratios = Enumerable.Range(0, rounds).Select(i => results["on"][i].RequestsPerSecond / results["off"][i].RequestsPerSecond).ToList();
                var median = ratios.Order().ElementAt(rounds / 2);
                var memoryMedian = Enumerable.Range(0, rounds).Select(i => results["memory"][i].RequestsPerSecond / results["off"][i].RequestsPerSecond).Order().ElementAt(rounds / 2);
                met &= median >= 0.95;
                WrkResult Median(string name) => results[name].OrderBy(r => r.RequestsPerSecond).ElementAt(rounds / 2);
                double Cpu(string name) => results[name].Select(r => r.CpuMicrosecondsPerRequest).Order().ElementAt(rounds / 2);
                Console.WriteLine($"| {bodyName} | {connections} | {Median("on").RequestsPerSecond:0} / {Median("memory").RequestsPerSecond:0} / {Median("off").RequestsPerSecond:0} | " +
                    $"{string.Join(", ", ratios.Select(r => r.ToString("0.00", CultureInfo.InvariantCulture)))} | {median:0.00} | {memoryMedian:0.00} | " +
                    $"{Cpu("on"):0.0} / {Cpu("memory"):0.0} / {Cpu("off"):0.0} | {Cpu("off") / Cpu("on"):0.00} | {Median("on").P99Ms:0.00} / {Median("off").P99Ms:0.00} |");
            }
        }

        // Memory: fill the store to 100,000 more records, then compare with the process without the record, which served as many.
        await Task.Delay(1000);
        var onBefore = Processes.RssMiB(on.Id);
        var rowsBefore = Rows(store);
        while (Rows(store) - rowsBefore < 100_000)
        {
            foreach (var (_, port) in new[] { targets[0], targets[2] }) await Wrk.RunAsync($"http://127.0.0.1:{port}/v1/chat/completions", 16, TimeSpan.FromSeconds(5), Targets.ChatBody, work);
            await Task.Delay(500);
        }
        await Task.Delay(1000);
        var rows = Rows(store);
        double onAfter = Processes.RssMiB(on.Id), offAfter = Processes.RssMiB(off.Id);
        var fileMiB = new FileInfo(store).Length / 1048576.0;
        met &= onAfter - onBefore < 10;
        Console.WriteLine($"\nMemory (RSS) with the record: {onBefore:0.0} MiB with {rowsBefore} records in the store, {onAfter:0.0} MiB with {rows} " +
            $"(+{onAfter - onBefore:0.0} MiB for {rows - rowsBefore} records); without the record, after the same requests: {offAfter:0.0} MiB. Store file: {fileMiB:0.0} MiB.");
        Console.WriteLine(met ? "Goals met." : "Goals NOT met.");
        SqliteConnection.ClearAllPools();
        Directory.Delete(work, recursive: true);
        return met;
    }

    private static long Rows(string path)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(last_id), 0) FROM activity_block"; // ids count the records written
        return (long)command.ExecuteScalar()!;
    }
}
