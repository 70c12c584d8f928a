using System.Collections.Concurrent;
using LmsProxy.Activity;
using Microsoft.Data.Sqlite;

namespace LmsProxy.Storage;

/// <summary>
/// The one local store (SQLite): activity records, daily usage, and the scheduler's and affinity map's state.
/// Requests only enqueue (a lock-free queue); a background writer takes the queue in one transaction every
/// FlushInterval, or as soon as four blocks of records are waiting. Nothing here can slow or fail a request: a file that
/// cannot be opened (corrupt, read-only, used by another LmsProxy) leaves the proxy in memory only, and a write that
/// fails (full disk, locked) is logged, counted and dropped. Either way /status says so. One process per file: a
/// lock file next to it is held while open.
/// </summary>
internal sealed partial class StateStore : IStateStore, IDisposable
{
    private const int MaxPending = 100_000;

    /// <summary>Records queued that wake the writer before its tick.</summary>
    private const int WakeAfter = 4 * RecordsPerBlock;

    private readonly StateOptions _options;
    private readonly ILogger<StateStore> _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentQueue<object> _pending = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly string? _connectionString;
    private readonly SqliteConnection? _connection;
    private readonly FileStream? _lock;
    private readonly Thread? _writer;
    private readonly SemaphoreSlim _wake = new(0);
    private int _pendingCount;
    private long _enqueued;
    private int _disposed;
    private long _writeErrors;
    private long _dropped;
    private long _lastRetention;
    private volatile string? _problem;

    public StateStore(StateOptions options, Diagnostics.ProxyMetrics metrics, ILogger<StateStore> logger, TimeProvider time)
    {
        metrics.Meter.CreateObservableCounter("lmsproxy.state.errors", () => Interlocked.Read(ref _writeErrors),
            description: "State store failures (cannot open, a write or read failed); the proxy goes on in memory.");
        metrics.Meter.CreateObservableCounter("lmsproxy.state.dropped", () => Interlocked.Read(ref _dropped),
            description: "Writes the state store dropped because its writer was too far behind.");
        _options = options;
        _logger = logger;
        _time = time;
        Path = options.Path;
        if (string.IsNullOrWhiteSpace(options.Path))
        {
            _problem = "LmsProxy:State:Path is empty: state and history are kept in memory only.";
            return;
        }
        try
        {
            var full = System.IO.Path.GetFullPath(options.Path);
            Path = full;
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
            if (File.Exists(full) && File.GetAttributes(full).HasFlag(FileAttributes.ReadOnly)) throw new StoreUnusableException($"the file {full} is read-only");
            _lock = TakeLock(full);
            _connectionString = new SqliteConnectionStringBuilder { DataSource = full, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 2 }.ToString();
            _connection = new SqliteConnection(_connectionString);
            _connection.Open();
            CreateSchema(_connection);
            // A thread of its own: a SQLite write (a checkpoint's fsync above all) blocks for milliseconds, and on a
            // thread-pool thread that stalled requests waiting for one (seen at one connection: 0.89 of the record off).
            _writer = new Thread(WriteLoop) { IsBackground = true, Name = "LmsProxy store writer" };
            _writer.Start();
            LogOpened(_logger, full);
        }
        catch (Exception ex) when (ex is SqliteException or IOException or UnauthorizedAccessException or StoreUnusableException
            or TypeInitializationException or DllNotFoundException)
        {
            _connection?.Dispose();
            _connection = null;
            _lock?.Dispose();
            _lock = null;
            _problem = $"The state store {Path} cannot be used ({Reason(ex)}): state and history are kept in memory only, and lost at a restart.";
            Interlocked.Increment(ref _writeErrors);
            LogUnusable(_logger, _problem);
        }
    }

    /// <summary>The file in use (or configured).</summary>
    public string Path { get; }

    /// <summary>Whether state and history are written to the file.</summary>
    public bool Persistent => _connection is not null;

    public StoreStatus Status => new(Path, Persistent, _problem, Interlocked.Read(ref _writeErrors), Interlocked.Read(ref _dropped), Volatile.Read(ref _pendingCount));

    public long Errors => Interlocked.Read(ref _writeErrors);

    public void Save(string kind, string key, string? value) => Enqueue(new StateWrite(kind, key, value));

    /// <summary>A finished record, for the history and the daily usage.</summary>
    public void Append(ActivityRecord record) => Enqueue(record);

    private void Enqueue(object item)
    {
        if (_connection is null) return;
        if (Interlocked.Increment(ref _pendingCount) > MaxPending)
        {
            // The writer is far behind (a very slow disk): drop rather than grow without bound.
            Interlocked.Decrement(ref _pendingCount);
            Interlocked.Increment(ref _dropped);
            return;
        }
        _pending.Enqueue(item);
        // Four blocks waiting wake the writer. Records held until the next tick (5,000 at 20,000 requests/s)
        // outlive the GC's first generations; the GC then grows its budgets, and the heap, by over 100 MiB. (One block
        // was a transaction per 256 requests: measurable at one connection.)
        if (Interlocked.Increment(ref _enqueued) % WakeAfter == 0 && _wake.CurrentCount == 0) _wake.Release();
    }

    private static FileStream TakeLock(string path)
    {
        // A restart may find the old process still writing its last batch: it gets a few seconds to let go.
        var deadline = Environment.TickCount64 + 3000;
        while (true)
        {
            try
            {
                // FileShare.None is an exclusive lock on every OS (flock on Linux and macOS); released when the process ends, even killed.
                return new FileStream(path + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (IOException) when (Environment.TickCount64 < deadline)
            {
                Thread.Sleep(100);
            }
            catch (IOException)
            {
                throw new StoreUnusableException($"another LmsProxy process uses it (the lock file {path}.lock is held); give each process its own LmsProxy:State:Path");
            }
        }
    }

    /// <summary>
    /// 256 KiB of page cache per connection instead of SQLite's 2 MiB: the writer appends blocks and never reads them
    /// back, so a full default cache was 1.75 MiB of resident memory for nothing (the history reads are rare).
    /// </summary>
    private const string SmallPageCache = "PRAGMA cache_size=-256";

    private static void CreateSchema(SqliteConnection connection)
    {
        Execute(connection, SmallPageCache);
        Execute(connection, """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS activity_block(
                last_id INTEGER PRIMARY KEY, first_id INTEGER NOT NULL, last_started_ms INTEGER NOT NULL, records BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS usage_daily(
                day TEXT NOT NULL, by TEXT NOT NULL, name TEXT NOT NULL,
                requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, gpu_ms INTEGER NOT NULL,
                PRIMARY KEY(day, by, name));
            CREATE TABLE IF NOT EXISTS state(kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(kind, key));
            """);
        // A file SQLite can open but whose pages are damaged shows it here, at start, rather than at the first write.
        using var check = connection.CreateCommand();
        check.CommandText = "PRAGMA quick_check(1)";
        if (check.ExecuteScalar() is string result && result != "ok") throw new StoreUnusableException("the file is damaged: " + result);
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private void WriteLoop()
    {
        try
        {
            while (true)
            {
                _wake.Wait(_options.FlushInterval, _stop.Token);
                Flush();
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping: Dispose flushes what is left.
        }
    }

    /// <summary>Writes what has queued up, in one transaction; retention runs every ten minutes.</summary>
    public void Flush()
    {
        var connection = _connection;
        if (connection is null) return;
        lock (connection)
        {
            try
            {
                if (!_pending.IsEmpty) WriteBatch(connection);
                var now = _time.GetTimestamp();
                if (_lastRetention == 0 || _time.GetElapsedTime(_lastRetention, now) > TimeSpan.FromMinutes(10))
                {
                    _lastRetention = now;
                    ApplyRetention(connection);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Whatever it is (SQLite, the disk, a bug): the writer's thread must not end, nor take the process with it.
                // Prepared again at the next batch: a statement of a failed transaction is not trusted.
                _commands?.Dispose();
                _commands = null;
                var errors = Interlocked.Increment(ref _writeErrors);
                _problem = $"Writing to the state store {Path} fails ({Reason(ex)}): new history and state are kept in memory only until it works again.";
                // Once, then every hundredth: a full disk must not flood the log.
                if (errors == 1 || errors % 100 == 0) LogWriteFailed(_logger, Path, errors, Reason(ex));
            }
        }
    }

    private void ApplyRetention(SqliteConnection connection)
    {
        using var command = connection.CreateCommand();
        // Whole blocks go: those whose newest record is past the retention, and those wholly older than the newest $cap ids
        // (ids count requests across restarts).
        command.CommandText = """
            DELETE FROM activity_block WHERE last_started_ms < $cut;
            DELETE FROM activity_block WHERE last_id <= (SELECT MAX(last_id) FROM activity_block) - $cap;
            """;
        command.Parameters.AddWithValue("$cut", (_time.GetUtcNow() - _options.ActivityRetention).ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$cap", Math.Max(1, _options.ActivityMaxRows));
        command.ExecuteNonQuery();
    }

    private static string Reason(Exception ex) => ex switch
    {
        SqliteException sqlite => $"SQLite error {sqlite.SqliteErrorCode}: {sqlite.Message}",
        // SQLite itself is a library next to the program (libe_sqlite3.so, .dylib, e_sqlite3.dll); the native
        // executable copied alone lacks it. Microsoft.Data.Sqlite reports that from a type initializer.
        _ when ex.GetBaseException() is DllNotFoundException => "SQLite's library e_sqlite3 is not next to the program: keep the libe_sqlite3 file that comes with it",
        _ => ex.Message,
    };

    public void Dispose()
    {
        // Registered twice (as itself and as IStateStore): the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        _writer?.Join(TimeSpan.FromSeconds(5));
        Flush();
        if (_connection is not null)
        {
            lock (_connection)
            {
                _commands?.Dispose();
                _connection.Dispose();
            }
            SqliteConnection.ClearPool(new SqliteConnection(_connectionString));
        }
        _lock?.Dispose();
        _stop.Dispose();
    }

    private sealed record StateWrite(string Kind, string Key, string? Value);

    private sealed class StoreUnusableException(string message) : Exception(message);

    [LoggerMessage(EventId = 60, Level = LogLevel.Information, Message = "State store: {Path}")]
    private static partial void LogOpened(ILogger logger, string path);

    [LoggerMessage(EventId = 61, Level = LogLevel.Error, Message = "{Problem}")]
    private static partial void LogUnusable(ILogger logger, string problem);

    [LoggerMessage(EventId = 62, Level = LogLevel.Error, Message = "Writing to the state store {Path} failed ({Count} failures so far): {Reason}. The proxy goes on; this history is kept in memory only.")]
    private static partial void LogWriteFailed(ILogger logger, string path, long count, string reason);
}

/// <summary>The store as /status shows it.</summary>
internal sealed record StoreStatus(string Path, bool Persistent, string? Problem, long Errors, long DroppedWrites, int PendingWrites);
