using LmsProxy.Activity;
using LmsProxy.Diagnostics;
using LmsProxy.Storage;
using LmsProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace LmsProxy.Tests.Activity;

/// <summary>When the store's writer runs: records must not wait in memory for long under load (see StateStore.Enqueue).</summary>
public sealed class StoreWriterTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("lmsproxy-writer-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact(Timeout = 30000)]
    public async Task Four_blocks_of_records_are_written_at_once_not_at_the_next_tick()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new ProxyMetrics(services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var options = new StateOptions { Path = Path.Combine(_folder, "state.db"), FlushInterval = TimeSpan.FromHours(1) };
        using var store = new StateStore(options, metrics, NullLogger<StateStore>.Instance, TimeProvider.System);
        var all = new ActivityRecorder.Query(2000, null, null, null, null);

        for (var i = 1; i < 1024; i++) store.Append(Record(i));
        await Task.Delay(300);
        Assert.Empty(store.ReadActivity(all, long.MaxValue, 2000)); // fewer: they wait for the tick

        store.Append(Record(1024));
        await Eventually.Until(() => store.ReadActivity(all, long.MaxValue, 2000).Count == 1024, TimeSpan.FromSeconds(10));
        Assert.Equal(0, store.Status.PendingWrites);
    }

    private static ActivityRecord Record(long id) => new()
    {
        Id = id, StartedAt = DateTime.UtcNow, Endpoint = "/v1/chat/completions", Method = "POST",
        Model = "m", ResolvedModel = "m", Host = "default", Status = 200, State = ActivityState.Done,
    };
}
