using System.Text.Json;
using LmsProxy.Scheduling;

namespace LmsProxy.Diagnostics;

/// <summary>
/// GET /events: what GET /status answers, as a server-sent "status" event whenever it changes (a load's progress, a
/// waiter, a load or unload), at most every <see cref="MinGap"/>, and at least every second while it changes (ages
/// and ETAs tick). The status page draws from it instead of polling. LM Studio is probed at most every
/// <see cref="ProbeEvery"/>, not on every event.
/// </summary>
internal static class StatusEvents
{
    public static readonly TimeSpan MinGap = TimeSpan.FromMilliseconds(200);
    public static readonly TimeSpan MaxGap = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan ProbeEvery = TimeSpan.FromSeconds(5);

    /// <summary>A comment this often when nothing changes, so a proxy in between does not time the stream out.</summary>
    public static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(15);

    public static async Task StreamAsync(HttpContext context, Scheduler scheduler, Security.ListenAddresses listening, Configuration.ProxySettings settings,
        Storage.StateStore store, TimeProvider time)
    {
        var aborted = context.RequestAborted;
        try
        {
            await ServerSentEvents.BeginAsync(context.Response, "status", aborted);
            string? last = null;
            (bool, string) probe = default;
            long probedAt = 0, sentAt = time.GetTimestamp();
            while (!aborted.IsCancellationRequested)
            {
                var change = scheduler.NextChange;
                if (probedAt == 0 || time.GetElapsedTime(probedAt) >= ProbeEvery)
                {
                    probe = await StatusEndpoints.ProbeFirstAsync(scheduler, aborted);
                    probedAt = time.GetTimestamp();
                }
                var json = JsonSerializer.Serialize(StatusEndpoints.Report(scheduler, listening, settings, store, probe), DiagnosticsJson.Default.StatusReport);
                if (json != last)
                {
                    await ServerSentEvents.WriteAsync(context.Response, "status", json, aborted);
                    (last, sentAt) = (json, time.GetTimestamp());
                }
                else if (time.GetElapsedTime(sentAt) >= Heartbeat)
                {
                    await ServerSentEvents.CommentAsync(context.Response, "no change", aborted);
                    sentAt = time.GetTimestamp();
                }
                await Task.Delay(MinGap, time, aborted);
                await Task.WhenAny(change, Task.Delay(MaxGap - MinGap, time, aborted));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The reader left.
        }
    }
}
