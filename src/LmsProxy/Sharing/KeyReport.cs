using LmsProxy.Activity;
using LmsProxy.Configuration;
using LmsProxy.Keys;

namespace LmsProxy.Sharing;

/// <summary>One key in /status: who, how it is served now, and today's use against its limits (0: no limit).</summary>
internal sealed record KeyStatus(string Name, string Role, string Priority, IReadOnlyList<string> Models, int InFlight, int Queued, int LastMinuteRequests,
    long RequestsToday, long TokensToday, double GpuSecondsToday, int MaxConcurrent, int RequestsPerMinute, long TokensPerDay, double GpuSecondsPerDay);

internal static class KeyReport
{
    /// <summary>Every key for an operator (or without keys' roles in play); only its own for an inference key.</summary>
    public static IReadOnlyList<KeyStatus> For(ApiKey? caller, KeyRegistry registry, SharingGate gate, UsageTotals usage, LmsProxyOptions options, TimeProvider time)
    {
        var now = time.GetUtcNow();
        var timestamp = time.GetTimestamp();
        return [.. registry.All(options).Where(k => caller is null || caller.IsOperator || ReferenceEquals(k, caller)).Select(k =>
        {
            var state = gate.StateOf(k.Name);
            var today = usage.Today(UsageTotals.ByKey, k.Name, now);
            var o = k.Options;
            return new KeyStatus(k.Name, k.Role.ToString().ToLowerInvariant(), k.Priority.ToString().ToLowerInvariant(), o.Models, state.InFlight, state.Queued,
                state.LastMinute(timestamp, time.TimestampFrequency), today.Requests, today.Tokens, Math.Round(today.GpuMs / 1000.0, 3),
                o.MaxConcurrent, o.RequestsPerMinute, o.TokensPerDay, o.GpuSecondsPerDay);
        })];
    }
}
