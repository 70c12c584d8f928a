using System.Text.Json;
using LmsProxy.Activity;
using Microsoft.Data.Sqlite;

namespace LmsProxy.Storage;

/// <summary>The store's rows: the writer's batch, and the reads of start-up and the endpoints.</summary>
public sealed partial class StateStore
{
    private const int BatchLimit = 5000;

    /// <summary>Records per INSERT statement: a statement's own cost (about as much as a row's) is paid once per this many.</summary>
    private const int RowsPerInsert = 64;

    private static readonly string[] ActivityColumns = ["id", "started_ms", "model", "asked", "key", "status", "record"];

    private void WriteBatch(SqliteConnection connection)
    {
        using var transaction = connection.BeginTransaction();
        using var insertOne = InsertCommand(connection, transaction, 1);
        using var insertMany = InsertCommand(connection, transaction, RowsPerInsert);
        var rows = new List<ActivityRecord>(RowsPerInsert);
        using var usage = Command(connection, transaction, """
            INSERT INTO usage_daily(day, by, name, requests, prompt_tokens, completion_tokens, gpu_ms) VALUES($day, $by, $name, $requests, $prompt, $completion, $gpu)
            ON CONFLICT(day, by, name) DO UPDATE SET requests = requests + $requests, prompt_tokens = prompt_tokens + $prompt,
                completion_tokens = completion_tokens + $completion, gpu_ms = gpu_ms + $gpu
            """, "$day", "$by", "$name", "$prompt", "$completion", "$gpu", "$requests");
        using var set = Command(connection, transaction,
            "INSERT INTO state(kind, key, value) VALUES($kind, $key, $value) ON CONFLICT(kind, key) DO UPDATE SET value = $value", "$kind", "$key", "$value");
        using var remove = Command(connection, transaction, "DELETE FROM state WHERE kind = $kind AND key = $key", "$kind", "$key");

        // Usage is added up per batch: one row update per day, model and key, not two per request.
        var usageDeltas = new Dictionary<(string Day, string By, string Name), (long Prompt, long Completion, long GpuMs, long Requests)>();
        for (var n = 0; n < BatchLimit && _pending.TryDequeue(out var item); n++)
        {
            Interlocked.Decrement(ref _pendingCount);
            switch (item)
            {
                case ActivityRecord r:
                    rows.Add(r);
                    if (rows.Count == RowsPerInsert) Insert(insertMany, rows);
                    if (r.ResolvedModel is null) break;
                    var day = r.StartedAt.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
                    foreach (var key in new[] { (day, UsageTotals.ByModel, r.ResolvedModel), (day, UsageTotals.ByKey, r.Key ?? UsageTotals.NoKey) })
                    {
                        var sum = usageDeltas.GetValueOrDefault(key);
                        usageDeltas[key] = (sum.Prompt + (r.PromptTokens ?? 0), sum.Completion + (r.CompletionTokens ?? 0), sum.GpuMs + r.GpuMs, sum.Requests + 1);
                    }
                    break;
                case StateWrite { Value: null } w:
                    Run(remove, w.Kind, w.Key);
                    break;
                case StateWrite w:
                    Run(set, w.Kind, w.Key, w.Value);
                    break;
            }
        }
        foreach (var r in rows) Insert(insertOne, [r]);
        foreach (var ((day, by, name), sum) in usageDeltas) Run(usage, day, by, name, sum.Prompt, sum.Completion, sum.GpuMs, sum.Requests);
        transaction.Commit();
        if (_problem?.StartsWith("Writing", StringComparison.Ordinal) == true) _problem = null;
    }

    private static SqliteCommand InsertCommand(SqliteConnection connection, SqliteTransaction transaction, int rows)
    {
        var values = string.Join(", ", Enumerable.Range(0, rows).Select(i => "(" + string.Join(", ", ActivityColumns.Select(c => $"${c}{i}")) + ")"));
        return Command(connection, transaction, $"INSERT OR REPLACE INTO activity({string.Join(", ", ActivityColumns)}) VALUES {values}",
            [.. Enumerable.Range(0, rows).SelectMany(i => ActivityColumns.Select(c => $"${c}{i}"))]);
    }

    private static void Insert(SqliteCommand command, List<ActivityRecord> rows)
    {
        var p = command.Parameters;
        for (var i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            var at = i * ActivityColumns.Length;
            p[at].Value = r.Id;
            p[at + 1].Value = new DateTimeOffset(r.StartedAt, TimeSpan.Zero).ToUnixTimeMilliseconds();
            p[at + 2].Value = (object?)r.ResolvedModel ?? DBNull.Value;
            p[at + 3].Value = (object?)r.Model ?? DBNull.Value;
            p[at + 4].Value = (object?)r.Key ?? DBNull.Value;
            p[at + 5].Value = (object?)r.Status ?? DBNull.Value;
            // UTF-8 as it comes out of the serializer, stored as it is (no UTF-16 string on the way).
            p[at + 6].Value = JsonSerializer.SerializeToUtf8Bytes(r, ActivityJson.Default.ActivityRecord);
        }
        command.ExecuteNonQuery();
        rows.Clear();
    }

    private static SqliteCommand Command(SqliteConnection connection, SqliteTransaction transaction, string sql, params string[] parameters)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var name in parameters) command.Parameters.Add(new SqliteParameter { ParameterName = name });
        command.Prepare();
        return command;
    }

    private static void Run(SqliteCommand command, params object?[] values)
    {
        for (var i = 0; i < values.Length; i++) command.Parameters[i].Value = values[i] ?? DBNull.Value;
        command.ExecuteNonQuery();
    }

    public IReadOnlyList<KeyValuePair<string, string>> Load(string kind)
    {
        var rows = new List<KeyValuePair<string, string>>();
        Read("SELECT key, value FROM state WHERE kind = $kind ORDER BY rowid", c => c.Parameters.AddWithValue("$kind", kind),
            r => rows.Add(new(r.GetString(0), r.GetString(1))));
        return rows;
    }

    public long LastActivityId()
    {
        long last = 0;
        Read("SELECT COALESCE(MAX(id), 0) FROM activity", _ => { }, r => last = r.GetInt64(0));
        return last;
    }

    public List<(DateOnly Day, string By, string Name, long Requests, long PromptTokens, long CompletionTokens, long GpuMs)> ReadUsage()
    {
        var rows = new List<(DateOnly, string, string, long, long, long, long)>();
        Read("SELECT day, by, name, requests, prompt_tokens, completion_tokens, gpu_ms FROM usage_daily", _ => { },
            r => rows.Add((DateOnly.ParseExact(r.GetString(0), "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), r.GetString(1), r.GetString(2),
                r.GetInt64(3), r.GetInt64(4), r.GetInt64(5), r.GetInt64(6))));
        return rows;
    }

    /// <summary>Finished records older than <paramref name="beforeId"/>, newest first (ids grow with time: no index but the id's).</summary>
    public List<ActivityRecord> ReadActivity(ActivityRecorder.Query query, long beforeId, int limit)
    {
        var rows = new List<ActivityRecord>();
        if (limit <= 0) return rows;
        Read("""
            SELECT record FROM activity WHERE id < $before
              AND ($model IS NULL OR model = $model COLLATE NOCASE OR asked = $model COLLATE NOCASE)
              AND ($key IS NULL OR key = $key) AND ($status IS NULL OR status = $status) AND ($since IS NULL OR started_ms >= $since)
            ORDER BY id DESC LIMIT $limit
            """, c =>
        {
            c.Parameters.AddWithValue("$before", beforeId);
            c.Parameters.AddWithValue("$model", (object?)query.Model ?? DBNull.Value);
            c.Parameters.AddWithValue("$key", (object?)query.Key ?? DBNull.Value);
            c.Parameters.AddWithValue("$status", (object?)query.Status ?? DBNull.Value);
            c.Parameters.AddWithValue("$since", (object?)query.Since?.ToUnixTimeMilliseconds() ?? DBNull.Value);
            c.Parameters.AddWithValue("$limit", limit);
        }, r =>
        {
            if (JsonSerializer.Deserialize(r.GetFieldValue<byte[]>(0), ActivityJson.Default.ActivityRecord) is { } record) rows.Add(record);
        });
        return rows;
    }

    public ActivityRecord? ReadActivity(long id)
    {
        ActivityRecord? found = null;
        Read("SELECT record FROM activity WHERE id = $id", c => c.Parameters.AddWithValue("$id", id),
            r => found = JsonSerializer.Deserialize(r.GetFieldValue<byte[]>(0), ActivityJson.Default.ActivityRecord));
        return found;
    }

    public long ActivityRows()
    {
        long count = 0;
        Read("SELECT COUNT(*) FROM activity", _ => { }, r => count = r.GetInt64(0));
        return count;
    }

    /// <summary>A read on its own connection (WAL: it does not wait for the writer); a failure reads as nothing, and is counted.</summary>
    private void Read(string sql, Action<SqliteCommand> bind, Action<SqliteDataReader> row)
    {
        if (_connection is null) return;
        try
        {
            using var connection = new SqliteConnection(_connectionString);
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            bind(command);
            using var reader = command.ExecuteReader();
            while (reader.Read()) row(reader);
        }
        catch (Exception ex) when (ex is SqliteException or JsonException or InvalidOperationException or FormatException)
        {
            Interlocked.Increment(ref _writeErrors);
            LogReadFailed(_logger, Path, Reason(ex));
        }
    }

    [LoggerMessage(EventId = 63, Level = LogLevel.Warning, Message = "Reading the state store {Path} failed: {Reason}")]
    private static partial void LogReadFailed(ILogger logger, string path, string reason);
}
