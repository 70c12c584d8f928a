using System.Net;
using System.Text.Json;
using LmsProxy.Activity;
using LmsProxy.Storage;

namespace LmsProxy.Tests.Activity;

/// <summary>The stored form of the history: every field comes back, earlier JSON blocks still read, damage is a FormatException.</summary>
public sealed class ActivityBlockCodecTests
{
    private static readonly DateTime Start = new(2026, 12, 1, 9, 30, 15, 123, DateTimeKind.Utc);

    private static List<ActivityRecord> Block() =>
    [
        new()
        {
            Id = 41, StartedAt = Start.AddTicks(7), Endpoint = "/v1/chat/completions", Method = "POST", Key = "alice", ClientAddress = IPAddress.Parse("192.168.1.7"),
            Model = "qwen", ResolvedModel = "qwen/qwen3-8b", Host = "gpu-a", Status = 200, State = ActivityState.Done, HeldMs = 1500, LoadMs = 1490,
            TtftMs = 1612, DurationMs = 2900, PromptTokens = 12, CompletionTokens = 300, TokensPerSecond = 231.57, BytesIn = 120, BytesOut = 70_000, GpuMs = 1400,
            RequestBody = "{\"model\":\"qwen\"}", ResponseBody = "data: é ✓\n\n",
        },
        // Earlier than the one before (records finish out of order), nothing optional set, the same strings again.
        new()
        {
            Id = 40, StartedAt = Start.AddSeconds(-2), Endpoint = "/v1/chat/completions", Method = "POST", ClientAddress = IPAddress.Parse("192.168.1.7"),
            Error = "hold_timeout", Cancelled = true, State = ActivityState.Done, TokensEstimated = true, DurationMs = 120_000,
        },
        new() { Id = long.MaxValue, StartedAt = Start, Endpoint = "/api/v0/models", Method = "GET", Client = "::1", Status = 503, State = ActivityState.Done },
    ];

    [Fact]
    public void Every_field_comes_back_as_it_was_written()
    {
        var written = Block();
        var read = ActivityBlockCodec.Decode(ActivityBlockCodec.Encode(written));

        // The API's own JSON of each record is the field-by-field comparison.
        Assert.Equal(written.Select(Json), read.Select(Json));
        Assert.Equal(DateTimeKind.Utc, read[0].StartedAt.Kind);
        Assert.Equal("192.168.1.7", read[1].Client);
    }

    [Fact]
    public void Is_much_smaller_than_the_json_it_replaces()
    {
        var many = Enumerable.Range(0, 256).Select(i => new ActivityRecord
        {
            Id = i, StartedAt = Start.AddMilliseconds(i * 3), Endpoint = "/v1/chat/completions", Method = "POST", ClientAddress = IPAddress.Loopback,
            Model = "bench-model", ResolvedModel = "bench-model", Host = "default", Status = 200, State = ActivityState.Done,
            TtftMs = 2, DurationMs = 2, PromptTokens = 1, CompletionTokens = 1, BytesIn = 70, BytesOut = 250, GpuMs = 1,
        }).ToList();
        var binary = ActivityBlockCodec.Encode(many).Length;
        var json = JsonSerializer.SerializeToUtf8Bytes(many, ActivityJson.Default.ListActivityRecord).Length;
        Assert.True(binary * 5 < json, $"{binary} bytes against {json} of JSON");
    }

    [Fact]
    public void A_block_written_as_json_by_an_earlier_version_is_read()
    {
        var written = Block();
        var read = ActivityBlockCodec.Decode(JsonSerializer.SerializeToUtf8Bytes(written, ActivityJson.Default.ListActivityRecord));
        Assert.Equal(written.Select(Json), read.Select(Json));
    }

    [Theory]
    [InlineData(0)]   // empty
    [InlineData(9)]   // cut in the first record
    [InlineData(-1)]  // an unknown version byte
    public void A_damaged_block_is_a_format_error(int keep)
    {
        var data = ActivityBlockCodec.Encode(Block());
        var damaged = keep switch
        {
            -1 => [0x7f, .. data[1..]],
            _ => data[..keep],
        };
        Assert.Throws<FormatException>(() => ActivityBlockCodec.Decode(damaged));
    }

    private static string Json(ActivityRecord record) => JsonSerializer.Serialize(record, ActivityJson.Default.ActivityRecord);
}
