using System.Collections.Concurrent;
using LmsProxy.Storage;

namespace LmsProxy.Activity;

/// <summary>
/// Requests, tokens and GPU time per UTC day, by model and by key: in memory (seeded from the store at start), and
/// added to the store's daily rows by its writer. GPU time is a request's time from forwarding to its last byte.
/// </summary>
internal sealed class UsageTotals
{
    public const string ByModel = "model";
    public const string ByKey = "key";
    public const string NoKey = "(none)";

    private readonly ConcurrentDictionary<(DateOnly Day, string By, string Name), Row> _rows = new();
    private RecentRow? _recentModel;
    private RecentRow? _recentKey;

    public UsageTotals(StateStore store)
    {
        foreach (var row in store.ReadUsage())
        {
            _rows[(row.Day, row.By, row.Name)] = new Row { Requests = row.Requests, PromptTokens = row.PromptTokens, CompletionTokens = row.CompletionTokens, GpuMs = row.GpuMs };
        }
    }

    public void Add(Activity.ActivityRecord record)
    {
        // Only what a model served: refusals before any model was named are in the activity list, not in usage.
        if (record.ResolvedModel is null) return;
        var day = DateOnly.FromDateTime(record.StartedAt);
        Add(RowOf(ref _recentModel, day, ByModel, record.ResolvedModel), record);
        Add(RowOf(ref _recentKey, day, ByKey, record.Key ?? NoKey), record);
    }

    /// <summary>The row, found again by reference when it is the one used last (no hashing of the name per request).</summary>
    private Row RowOf(ref RecentRow? recent, DateOnly day, string by, string name)
    {
        if (recent is { } last && last.Day == day && ReferenceEquals(last.Name, name)) return last.Row;
        var row = _rows.GetOrAdd((day, by, name), static _ => new Row());
        recent = new RecentRow(day, name, row);
        return row;
    }

    private sealed record RecentRow(DateOnly Day, string Name, Row Row);

    private static void Add(Row row, Activity.ActivityRecord record)
    {
        Interlocked.Increment(ref row.Requests);
        Interlocked.Add(ref row.PromptTokens, record.PromptTokens ?? 0);
        Interlocked.Add(ref row.CompletionTokens, record.CompletionTokens ?? 0);
        Interlocked.Add(ref row.GpuMs, record.GpuMs);
    }

    /// <summary>What <paramref name="name"/> (a model or key) used on the UTC day of <paramref name="now"/>: tokens and GPU milliseconds.</summary>
    public (long Requests, long Tokens, long GpuMs) Today(string by, string name, DateTimeOffset now)
    {
        if (!_rows.TryGetValue((DateOnly.FromDateTime(now.UtcDateTime), by, name), out var row)) return default;
        return (Interlocked.Read(ref row.Requests), Interlocked.Read(ref row.PromptTokens) + Interlocked.Read(ref row.CompletionTokens), Interlocked.Read(ref row.GpuMs));
    }

    /// <summary>The days from <paramref name="days"/> − 1 days ago to today, newest first.</summary>
    public UsageReport Report(string by, int days, DateTimeOffset now)
    {
        var first = DateOnly.FromDateTime(now.UtcDateTime).AddDays(1 - days);
        var rows = _rows.Where(r => r.Key.By == by && r.Key.Day >= first)
            .OrderByDescending(r => r.Key.Day).ThenBy(r => r.Key.Name, StringComparer.Ordinal)
            .Select(r => new UsageReport.Entry(r.Key.Day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), r.Key.Name,
                Interlocked.Read(ref r.Value.Requests), Interlocked.Read(ref r.Value.PromptTokens), Interlocked.Read(ref r.Value.CompletionTokens),
                Math.Round(Interlocked.Read(ref r.Value.GpuMs) / 1000.0, 3)))
            .ToList();
        return new UsageReport(by, days, rows);
    }

    private sealed class Row
    {
        public long Requests;
        public long PromptTokens;
        public long CompletionTokens;
        public long GpuMs;
    }
}

/// <summary>GET /usage: one entry per day and model (or key).</summary>
internal sealed record UsageReport(string By, int Days, IReadOnlyList<UsageReport.Entry> Usage)
{
    public sealed record Entry(string Day, string Name, long Requests, long PromptTokens, long CompletionTokens, double GpuSeconds);
}
