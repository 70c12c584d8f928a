using System.Collections.Concurrent;
using System.Net;

namespace LmsProxy.Keys;

/// <summary>
/// Failed authentication per client address, over a one-minute window: counted (metric and a warning per address
/// and window), and slowed, so that guessing keys from one address costs time: after <see cref="FreeFailures"/>
/// failures each further 401 waits 100 ms more, up to <see cref="MaxDelay"/>. Only refusals wait; a valid key never does.
/// </summary>
internal sealed partial class AuthFailures(TimeProvider time, Diagnostics.ProxyMetrics metrics, ILoggerFactory loggerFactory)
{
    public const int FreeFailures = 5;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);
    private const int MaxAddresses = 10_000;

    private readonly ConcurrentDictionary<IPAddress, Entry> _byAddress = new();
    private readonly ILogger _logger = loggerFactory.CreateLogger("LmsProxy.Security");
    private readonly System.Diagnostics.Metrics.Counter<long> _failures = metrics.Meter.CreateCounter<long>("lmsproxy.auth.failures", description: "Requests refused for a missing or wrong API key.");

    /// <summary>Counts a failure and returns how long its answer waits.</summary>
    public TimeSpan Failed(IPAddress? address)
    {
        _failures.Add(1);
        address ??= IPAddress.None;
        var now = time.GetUtcNow();
        if (_byAddress.Count >= MaxAddresses) Prune(now);
        var entry = _byAddress.GetOrAdd(address, static _ => new Entry());
        int count;
        bool warn;
        lock (entry)
        {
            if (now - entry.WindowStart >= Window)
            {
                entry.WindowStart = now;
                entry.Count = 0;
                entry.Warned = false;
            }
            count = ++entry.Count;
            warn = count > FreeFailures && !entry.Warned;
            if (warn) entry.Warned = true;
        }
        if (warn) LogRepeated(_logger, address.ToString(), count);
        if (count <= FreeFailures) return TimeSpan.Zero;
        var delay = TimeSpan.FromMilliseconds(100 * (count - FreeFailures));
        return delay < MaxDelay ? delay : MaxDelay;
    }

    /// <summary>Failures from the address in its current window (for tests and /status).</summary>
    public int CountFor(IPAddress address) => _byAddress.TryGetValue(address, out var e) && time.GetUtcNow() - e.WindowStart < Window ? e.Count : 0;

    private void Prune(DateTimeOffset now)
    {
        foreach (var (address, entry) in _byAddress)
        {
            if (now - entry.WindowStart >= Window) _byAddress.TryRemove(address, out _);
        }
    }

    private sealed class Entry
    {
        public DateTimeOffset WindowStart;
        public int Count;
        public bool Warned;
    }

    [LoggerMessage(EventId = 61, Level = LogLevel.Warning, Message = "Repeated failed authentication from {Address}: {Count} in the last minute; further refusals are slowed")]
    private static partial void LogRepeated(ILogger logger, string address, int count);
}
