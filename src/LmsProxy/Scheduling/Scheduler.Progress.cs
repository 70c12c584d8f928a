using System.Collections.Concurrent;
using LmsProxy.Loading;

namespace LmsProxy.Scheduling;

/// <summary>
/// How far each load is, and when it will end. Real progress where the loader reports it (lms's spinner percentage),
/// else an estimate from the model's last load time on that host, said to be one. A load whose real progress stops
/// rising for LoadStallTimeout is cancelled (its lms process killed) and fails with the percentage it reached; the
/// watch starts at the first percentage, so an older lms that prints none is left to LoadTimeout.
/// Progress arrives on lms's reader thread every ~80 ms: it is kept in <see cref="LoadTrack"/> without the lock.
/// </summary>
internal sealed partial class Scheduler
{
    private readonly ConcurrentDictionary<HostedModel, LoadTrack> _tracks = new();

    /// <summary>
    /// Per host and model, what a load takes after lms's percentage, extrapolated, would reach 100%: lms's exit and the
    /// proxy's check that the model is listed (a moving average of the loads so far; not kept across restarts).
    /// </summary>
    private readonly ConcurrentDictionary<(string Host, string Model), double> _tailMs = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes at the next change operators may want to see (a state published, a load's progress, a waiter).</summary>
    public Task NextChange => Volatile.Read(ref _changed).Task;

    private void SignalChanged() => Interlocked.Exchange(ref _changed, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    internal sealed class LoadTrack(long started, TimeSpan? expected, bool swap, TimeProvider time, double? tailMs = null) : IDisposable
    {
        private double _fraction = -1;

        /// <summary>What the load took after the rate said 100%, last times (null: not known yet).</summary>
        public double? TailMs { get; } = tailMs;

        /// <summary>Timestamp of the latest rise.</summary>
        public long LastAt { get; private set; }

        public long Started { get; } = started;

        /// <summary>The model's last load time on this host; null before its first load.</summary>
        public TimeSpan? Expected { get; } = expected;

        /// <summary>Other models were unloaded to make room for this one.</summary>
        public bool Swap { get; } = swap;

        /// <summary>Timestamp and value of the first percentage: the rate is measured from there (lms's start-up excluded).</summary>
        public long FirstAt { get; private set; }

        public double FirstFraction { get; private set; }

        public double Fraction => Volatile.Read(ref _fraction);

        public bool Real => Fraction >= 0;

        /// <summary>Cancelled when real progress stops rising for the stall time-out.</summary>
        public CancellationTokenSource Stall { get; } = new(Timeout.InfiniteTimeSpan, time);

        /// <summary>Returns true when the value rose (the stall watch starts again).</summary>
        public bool Report(double fraction, long now)
        {
            var previous = Fraction;
            if (fraction <= previous) return false;
            if (previous < 0)
            {
                FirstAt = now;
                FirstFraction = fraction;
            }
            LastAt = now;
            Volatile.Write(ref _fraction, fraction);
            return true;
        }

        public void Dispose() => Stall.Dispose();
    }

    /// <summary>A load's progress (0..1; null when nothing is known), where it comes from, and the time left.</summary>
    internal readonly record struct LoadEstimate(double? Progress, string Source, double? EtaMs);

    /// <summary>Starts tracking a load just before the loader runs; disposing it ends the tracking.</summary>
    private TrackedLoad TrackLoad(HostedModel instance, long started, bool swap)
    {
        var track = new LoadTrack(started, LastLoadTime(instance.Host, instance.ModelKey), swap, _time,
            _tailMs.TryGetValue((instance.Host.Name, instance.ModelKey), out var tail) ? tail : null);
        _tracks[instance] = track;
        var stallAfter = _settings.Current.Loading.LoadStallTimeout;
        var source = instance.Host.Loader.Loader as ILoadProgressSource;
        Action<string, double> handler = (key, fraction) =>
        {
            if (!string.Equals(key, instance.ModelKey, StringComparison.OrdinalIgnoreCase) || !track.Report(fraction, _time.GetTimestamp())) return;
            if (stallAfter > TimeSpan.Zero) track.Stall.CancelAfter(fraction < 1 ? stallAfter : Timeout.InfiniteTimeSpan);
            SignalChanged();
        };
        if (source is not null) source.LoadProgress += handler;
        SignalChanged();
        return new TrackedLoad(this, instance, track, source, handler);
    }

    private sealed class TrackedLoad(Scheduler scheduler, HostedModel instance, LoadTrack track, ILoadProgressSource? source, Action<string, double> handler) : IDisposable
    {
        public LoadTrack Track { get; } = track;

        public void Dispose()
        {
            if (source is not null) source.LoadProgress -= handler;
            scheduler._tracks.TryRemove(new KeyValuePair<HostedModel, LoadTrack>(instance, Track));
            Track.Dispose();
            scheduler.SignalChanged();
        }
    }

    /// <summary>Where the load of <paramref name="instance"/> is now; null when it is not loading.</summary>
    internal LoadEstimate? EstimateOf(HostedModel instance, long now) =>
        _tracks.TryGetValue(instance, out var track) ? Estimate(track, now, _time.TimestampFrequency) : null;

    /// <summary>
    /// Real progress: the time left at the rate seen since the first percentage, blended with the last load time as
    /// progress is low (early rates are noisy). An estimate: the last load time against the time spent.
    /// </summary>
    internal static LoadEstimate Estimate(LoadTrack track, long now, long frequency)
    {
        double Ms(long ticks) => ticks * 1000.0 / frequency;
        var elapsedMs = Ms(now - track.Started);
        double? fromHistory = track.Expected is { } expected ? Math.Max(0, expected.TotalMilliseconds - elapsedMs) : null;
        if (!track.Real)
        {
            if (track.Expected is not { } last || last <= TimeSpan.Zero) return new(null, "estimate", null);
            return new(Math.Min(0.99, elapsedMs / last.TotalMilliseconds), "estimate", fromHistory);
        }
        var p = track.Fraction;
        var risen = p - track.FirstFraction;
        double? fromRate = risen > 0.02 ? Ms(now - track.FirstAt) * (1 - p) / risen : null;
        // Once a load's tail is known, the rate plus the tail; before, the rate blended with the whole last load time.
        var eta = fromRate is { } rate && track.TailMs is { } tail ? rate + Math.Max(0, tail)
            : fromRate is { } r && fromHistory is { } history ? p * r + (1 - p) * history
            : fromRate ?? fromHistory;
        return new(p, "lms", eta);
    }

    /// <summary>A load ended: how long after the rate's 100% it did, averaged with the loads before (under the lock).</summary>
    private void LearnTail(Hosts.LmStudioHost host, string key, LoadTrack track, long now)
    {
        var risen = track.Fraction - track.FirstFraction;
        if (!track.Real || risen <= 0.02) return;
        var hundred = track.FirstAt + (track.LastAt - track.FirstAt) * (1 - track.FirstFraction) / risen;
        var tailMs = (now - hundred) * 1000.0 / _time.TimestampFrequency;
        _tailMs[(host.Name, key)] = _tailMs.TryGetValue((host.Name, key), out var before) ? (before + tailMs) / 2 : tailMs;
    }

    private static string StalledMessage(string key, Hosts.LmStudioHost host, LoadTrack track, TimeSpan after) =>
        $"Loading '{key}' on host '{host.Name}' stopped at {track.Fraction * 100:0}%: no progress for {after.TotalSeconds:0} s (LmsProxy:LoadStallTimeout), so it was stopped.";
}
