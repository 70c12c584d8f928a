using System.Diagnostics;
using System.Net;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Memory;

/// <summary>Measurements of this process's resident memory: they run after the parallel tests, one at a time.</summary>
[CollectionDefinition(nameof(MemoryMeasurement), DisableParallelization = true)]
public sealed class MemoryMeasurement;

/// <summary>
/// Held request bodies have an overall cap (LmsProxy:MaxHeldBodyBytes), and large ones are not kept in a pool after
/// their request. The proxy runs in this process, so the process's resident memory is the proxy's (plus the test's).
/// </summary>
[Collection(nameof(MemoryMeasurement))]
public sealed class HeldBodyMemoryTests(ITestOutputHelper output)
{
    private const long MiB = 1024 * 1024;

    // Just under the simulated LM Studio's own body limit (Kestrel's 30,000,000 bytes).
    private const int BodyBytes = 29_000_000;

    [Fact(Timeout = 180000)]
    public async Task FortyHeld30MbBodies_OverTheCapGet503_AndMemoryIsGivenBackAfterwards()
    {
        // The load outlasts the test: requests are held until HoldTimeout, so none is forwarded (the simulated LM Studio
        // would parse 30 MB bodies in this same process and blur the measurement).
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(25) },
            new Dictionary<string, string?> { ["LmsProxy:Loader"] = "rest", ["LmsProxy:HoldTimeout"] = "00:00:03" });
        using var client = env.Proxy.Client(TimeSpan.FromSeconds(90));
        var body = LargeChat(BodyBytes);

        // Once through every path first (JIT, connection pools), so that the baseline is a proxy that has worked.
        using (var warmUp = await client.PostAsync("/v1/chat/completions", Content(body)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, warmUp.StatusCode);
            Assert.Equal("model_loading", await warmUp.ErrorCode());
        }
        var before = Resident();

        long peak = 0;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                using var self = Process.GetCurrentProcess();
                peak = Math.Max(peak, self.WorkingSet64);
                await Task.Delay(20);
            }
        });
        var answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(async _ =>
        {
            using var response = await client.PostAsync("/v1/chat/completions", Content(body));
            return (response.StatusCode, Code: await response.ErrorCode(), RetryAfter: response.Headers.RetryAfter?.Delta);
        }));
        await sampling.CancelAsync();
        await sampler;
        var after = Resident();
        output.WriteLine($"resident before {before / MiB} MiB, peak {peak / MiB} MiB, after {after / MiB} MiB; answers: "
            + string.Join(", ", answers.GroupBy(a => a.Code).Select(g => $"{g.Key} {g.Count()}")));

        var held = answers.Count(a => a.Code == "model_loading");
        var full = answers.Where(a => a.Code == "held_bodies_full").ToList();
        // 256 MiB holds 9 bodies of 29 MB at most; every other request is refused at once.
        Assert.InRange(held, 1, 9);
        Assert.Equal(40 - held, full.Count);
        Assert.All(full, a => Assert.Equal(HttpStatusCode.ServiceUnavailable, a.StatusCode));
        Assert.All(full, a => Assert.True(a.RetryAfter >= TimeSpan.FromSeconds(1), "Retry-After"));
        Assert.InRange(peak - before, long.MinValue, 256 * MiB + 160 * MiB);
        Assert.InRange(after - before, long.MinValue, 100 * MiB);
        Assert.Equal(0, env.Simulator.State.InferenceRequests);
    }

    private static ByteArrayContent Content(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new("application/json");
        return content;
    }

    private static byte[] LargeChat(int size)
    {
        var head = "{\"model\":\"qwen/qwen3-8b\",\"messages\":[{\"role\":\"user\",\"content\":\""u8.ToArray();
        var tail = "\"}]}"u8.ToArray();
        var body = new byte[size];
        head.CopyTo(body, 0);
        body.AsSpan(head.Length, size - head.Length - tail.Length).Fill((byte)'x');
        tail.CopyTo(body, size - tail.Length);
        return body;
    }

    /// <summary>Resident memory once the garbage is collected and the freed memory given back to the system.</summary>
    private static long Resident()
    {
        for (var i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }
        using var self = Process.GetCurrentProcess();
        return self.WorkingSet64;
    }
}
