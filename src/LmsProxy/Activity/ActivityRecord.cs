using System.Text.Json;
using System.Text.Json.Serialization;

namespace LmsProxy.Activity;

/// <summary>Where a request is now; in flight until <see cref="Done"/>.</summary>
internal enum ActivityState
{
    [JsonStringEnumMemberName("queued")] Queued,
    [JsonStringEnumMemberName("loading")] Loading,
    [JsonStringEnumMemberName("forwarding")] Forwarding,
    [JsonStringEnumMemberName("streaming")] Streaming,
    [JsonStringEnumMemberName("done")] Done,
}

/// <summary>
/// One request's record, in flight and after: who asked for what, what served it, where the time went, its tokens.
/// Written by the request's own thread (and the load events for its hold), read by the endpoints as it changes:
/// every field is a word or a reference, so a reader sees each whole, and an in-flight record may be a few ms behind.
/// </summary>
internal sealed class ActivityRecord
{
    public long Id { get; init; }
    /// <summary>UTC (written with a Z).</summary>
    public DateTime StartedAt { get; init; }
    public string Endpoint { get; init; } = "";
    public string Method { get; init; } = "";
    public string? Key { get; set; }
    /// <summary>The remote address, made text only when read (not on the request path).</summary>
    public string? Client
    {
        get => _client ??= ClientAddress?.ToString();
        init => _client = value;
    }

    private string? _client;

    /// <summary>The client's address as text, one string per address for a whole block of records (the store's writer).</summary>
    internal string? ClientText(Dictionary<System.Net.IPAddress, string> known)
    {
        if (_client is not null || ClientAddress is not { } address) return _client;
        if (!known.TryGetValue(address, out var text)) known[address] = text = address.ToString();
        return text;
    }

    [JsonIgnore] internal System.Net.IPAddress? ClientAddress { get; init; }
    public string? Model { get; set; }
    public string? ResolvedModel { get; set; }
    public string? Host { get; set; }
    public int? Status { get; set; }
    public string? Error { get; set; }
    public bool Cancelled { get; set; }

    [JsonConverter(typeof(JsonStringEnumConverter<ActivityState>))]
    public ActivityState State { get; set; }

    public long HeldMs { get; set; }
    public long LoadMs { get; set; }
    public long? TtftMs { get; set; }
    public long DurationMs { get; set; }
    public long? PromptTokens { get; set; }
    public long? CompletionTokens { get; set; }
    public double? TokensPerSecond { get; set; }
    public bool TokensEstimated { get; set; }
    public long BytesIn { get; set; }
    public long BytesOut { get; set; }

    /// <summary>From forwarding to the last byte: the host's time on it, for /usage.</summary>
    public long GpuMs { get; set; }

    /// <summary>With Activity:Capture, the bodies (cut at the limit); only in GET /activity/{id}.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? RequestBody { get; set; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ResponseBody { get; set; }

    // Stopwatch timestamps, internal bookkeeping.
    [JsonIgnore] internal long StartTimestamp { get; init; }
    [JsonIgnore] internal long ForwardTimestamp { get; set; }
    [JsonIgnore] internal long LoadWaitStarted { get; set; }
    [JsonIgnore] internal ResponseTap? Tap { get; set; }
    [JsonIgnore] internal CancellationTokenSource? Cancel { get; set; }
    [JsonIgnore] internal CancellationToken OriginalAborted { get; set; }
    [JsonIgnore] internal HttpContext? Context { get; set; }
    [JsonIgnore] internal int OperatorCancelled;

    /// <summary>A copy for a reader that must not see later changes (the SSE stream and the store get one each).</summary>
    public ActivityRecord Copy()
    {
        var copy = (ActivityRecord)MemberwiseClone();
        copy.Context = null;
        copy.Tap = null;
        copy.Cancel = null;
        return copy;
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(ActivityRecord))]
[JsonSerializable(typeof(List<ActivityRecord>))]
[JsonSerializable(typeof(ActivityList))]
[JsonSerializable(typeof(UsageReport))]
[JsonSerializable(typeof(ActivityError))]
[JsonSerializable(typeof(CancelAccepted))]
internal sealed partial class ActivityJson : JsonSerializerContext;

/// <summary>{"error": "..."}: a bad query or an unknown id (source-generated, as Native AOT needs).</summary>
internal sealed record ActivityError(string? Error);

internal sealed record CancelAccepted(long Id, bool Cancelled);

internal sealed record ActivityList(IReadOnlyList<ActivityRecord> Requests);
