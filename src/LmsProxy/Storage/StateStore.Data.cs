using System.Text.Json;
using LmsProxy.Activity;
using Microsoft.Data.Sqlite;

namespace LmsProxy.Storage;

/// <summary>The store's rows: the writer's batch, and the reads of start-up and the endpoints.</summary>
internal sealed partial class StateStore
{
    private const int BatchLimit = 5000;

    /// <summary>
    /// Records per row: SQLite and its .NET provider cost about 15 µs per inserted row on a busy 2-core machine, more
    /// than the record itself; a row of 256 records (ActivityBlockCodec) pays that once for all of them.
    /// </summary>
    private const int RecordsPerBlock = 256;

    /// <summary>The writer's statements, prepared once for the store's connection rather than four per batch (a batch every 1,024 records under load).</summary>
    private sealed class WriterCommands(SqliteConnection connection) : IDisposable
    {
        public readonly SqliteCommand Insert = Command(connection,
            "INSERT OR REPLACE INTO activity_block(last_id, first_id, last_started_ms, records) VALUES($last, $first, $started, $records)",
            "$last", "$first", "$started", "$records");
        public readonly SqliteCommand AddUsage = Command(connection, """
            INSERT INTO usage_daily(day, by, name, requests, prompt_tokens, completion_tokens, gpu_ms) VALUES($day, $by, $name, $requests, $prompt, $completion, $gpu)
            ON CONFLICT(day, by, name) DO UPDATE SET requests = requests + $requests, prompt_tokens = prompt_tokens + $prompt,
                completion_tokens = completion_tokens + $completion, gpu_ms = gpu_ms + $gpu
            """, "$day", "$by", "$name", "$prompt", "$completion", "$gpu", "$requests");
        public readonly SqliteCommand Set = Command(connection,
            "INSERT INTO state(kind, key, value) VALUES($kind, $key, $value) ON CONFLICT(kind, key) DO UPDATE SET value = $value", "$kind", "$key", "$value");
        public readonly SqliteCommand Remove = Command(connection, "DELETE FROM state WHERE kind = $kind AND key = $key", "$kind", "$key");

        public void Enlist(SqliteTransaction transaction) => Insert.Transaction = AddUsage.Transaction = Set.Transaction = Remove.Transaction = transaction;

        public void Dispose()
        {
            Insert.Dispose();
            AddUsage.Dispose();
            Set.Dispose();
            Remove.Dispose();
        }
    }

    private WriterCommands? _commands;

    private void WriteBatch(SqliteConnection connection)
    {
        using var transaction = connection.BeginTransaction();
        var commands = _commands ??= new WriterCommands(connection);
        commands.Enlist(transaction);
        var (insert, addUsage, set, remove) = (commands.Insert, commands.AddUsage, commands.Set, commands.Remove);
        var block = new List<ActivityRecord>(RecordsPerBlock);

        // Usage is added up per batch: one row update per day, model and key, not two per request.
        var usage = new UsageBatch();
        for (var n = 0; n < BatchLimit && _pending.TryDequeue(out var item); n++)
        {
            Interlocked.Decrement(ref _pendingCount);
            switch (item)
            {
                case ActivityRecord r:
                    block.Add(r);
                    if (block.Count == RecordsPerBlock) InsertBlock(insert, block);
                    usage.Add(r);
                    break;
                case StateWrite { Value: null } w:
                    Run(remove, w.Kind, w.Key);
                    break;
                case StateWrite w:
                    Run(set, w.Kind, w.Key, w.Value);
                    break;
            }
        }
        if (block.Count > 0) InsertBlock(insert, block);
        foreach (var ((day, by, name), sum) in usage.Sums) Run(addUsage, day, by, name, sum.Prompt, sum.Completion, sum.GpuMs, sum.Requests);
        transaction.Commit();
        if (_problem?.StartsWith("Writing", StringComparison.Ordinal) == true) _problem = null;
    }

    /// <summary>One batch's usage, summed per day, model and key (the day's text made once per day, not per record).</summary>
    private sealed class UsageBatch
    {
        public readonly Dictionary<(string Day, string By, string Name), UsageSum> Sums = [];
        private DateOnly _day;
        private string _dayText = "";

        public void Add(ActivityRecord record)
        {
            if (record.ResolvedModel is null) return;
            var day = DateOnly.FromDateTime(record.StartedAt);
            if (day != _day || _dayText.Length == 0) (_day, _dayText) = (day, day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture));
            Sum(ref _lastModel, UsageTotals.ByModel, record.ResolvedModel).Add(record);
            Sum(ref _lastKey, UsageTotals.ByKey, record.Key ?? UsageTotals.NoKey).Add(record);
        }

        // The row the previous record went to, by kind: consecutive records mostly share model and key, and then no
        // three strings are hashed per record.
        private (string Day, string Name, UsageSum Sum)? _lastModel, _lastKey;

        private UsageSum Sum(ref (string Day, string Name, UsageSum Sum)? last, string by, string name)
        {
            if (last is { } hit && ReferenceEquals(hit.Day, _dayText) && string.Equals(hit.Name, name, StringComparison.Ordinal)) return hit.Sum;
            if (!Sums.TryGetValue((_dayText, by, name), out var sum)) Sums[(_dayText, by, name)] = sum = new UsageSum();
            last = (_dayText, name, sum);
            return sum;
        }
    }

    private sealed class UsageSum
    {
        public long Prompt, Completion, GpuMs, Requests;

        public void Add(ActivityRecord record)
        {
            Prompt += record.PromptTokens ?? 0;
            Completion += record.CompletionTokens ?? 0;
            GpuMs += record.GpuMs;
            Requests++;
        }
    }

    private static void InsertBlock(SqliteCommand command, List<ActivityRecord> block)
    {
        var p = command.Parameters;
        p[0].Value = block.Max(r => r.Id);
        p[1].Value = block.Min(r => r.Id);
        p[2].Value = new DateTimeOffset(block.Max(r => r.StartedAt), TimeSpan.Zero).ToUnixTimeMilliseconds();
        p[3].Value = ActivityBlockCodec.Encode(block);
        command.ExecuteNonQuery();
        block.Clear();
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, params string[] parameters)
    {
        var command = connection.CreateCommand();
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
        Read("SELECT COALESCE(MAX(last_id), 0) FROM activity_block", _ => { }, r => last = r.GetInt64(0));
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

    /// <summary>
    /// Finished records older than <paramref name="beforeId"/> that match, newest first: blocks are read newest first and
    /// filtered here (an operator's query; the request path never reads).
    /// </summary>
    public List<ActivityRecord> ReadActivity(ActivityRecorder.Query query, long beforeId, int limit)
    {
        var found = new List<ActivityRecord>();
        if (limit <= 0 || _connection is null) return found;
        var sinceMs = query.Since?.ToUnixTimeMilliseconds();
        var enough = false;
        Read("SELECT records FROM activity_block WHERE first_id < $before AND ($since IS NULL OR last_started_ms >= $since) ORDER BY last_id DESC", c =>
        {
            c.Parameters.AddWithValue("$before", beforeId);
            c.Parameters.AddWithValue("$since", (object?)sinceMs ?? DBNull.Value);
        }, r =>
        {
            // Blocks overlap a little in ids (records finish out of order): one block past the limit keeps the order right.
            if (enough) return;
            if (found.Count >= limit) enough = true;
            foreach (var record in ActivityBlockCodec.Decode(r.GetFieldValue<byte[]>(0)))
            {
                if (record.Id < beforeId && query.Matches(record)) found.Add(record);
            }
        });
        found.Sort((a, b) => b.Id.CompareTo(a.Id));
        return found.Count > limit ? found[..limit] : found;
    }

    public ActivityRecord? ReadActivity(long id)
    {
        ActivityRecord? found = null;
        Read("SELECT records FROM activity_block WHERE first_id <= $id AND last_id >= $id", c => c.Parameters.AddWithValue("$id", id),
            r => found ??= ActivityBlockCodec.Decode(r.GetFieldValue<byte[]>(0)).FirstOrDefault(x => x.Id == id));
        return found;
    }

    /// <summary>A read on its own connection (WAL: it does not wait for the writer); a failure reads as nothing, and is counted.</summary>
    private void Read(string sql, Action<SqliteCommand> bind, Action<SqliteDataReader> row)
    {
        if (_connection is null) return;
        try
        {
            using var connection = new SqliteConnection(_connectionString);
            connection.Open();
            Execute(connection, SmallPageCache);
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
