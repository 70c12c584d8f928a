using System.Runtime.CompilerServices;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>
/// One test process runs dozens of proxies, simulators and clients at once, and its host blocks thread-pool threads
/// by design (the test adapter holds one for the whole run; WebApplicationFactory starts and stops hosts
/// synchronously). On 2 cores the pool starts with 2 threads and adds about one per half second when they are all
/// blocked: measured, a work item queued every 50 ms waited over 100 ms 13–18 times per run, up to 3.5 s, and the
/// timing tests measured those stalls (a load's spinner, a stream's first token). With 32 threads ready from the
/// start: no wait over 100 ms in a whole run. A proxy in production has one host and no such callers.
/// </summary>
internal static class TestHostThreads
{
    [ModuleInitializer]
    internal static void Start()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), Math.Max(io, 32));
    }
}
