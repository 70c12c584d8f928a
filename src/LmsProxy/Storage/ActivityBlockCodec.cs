using System.Net;
using System.Text.Json;
using LmsProxy.Activity;

namespace LmsProxy.Storage;

/// <summary>
/// How a block of finished records is stored: a compact binary form, numbers as varints and each distinct string
/// (endpoint, model, host, client...) written once per block. The store keeps every request; at thousands a second,
/// JSON text and SQLite's page writes for it were the largest part of what the record cost, and this form is about a
/// sixth of the JSON's size and several times cheaper to write. Blocks that earlier versions wrote as a JSON array
/// (they start with '[') are still read.
/// </summary>
internal static class ActivityBlockCodec
{
    private const byte Version1 = 1;

    // Which optional values a record carries, one bit each.
    private const int HasStatus = 1, HasTtft = 2, HasPrompt = 4, HasCompletion = 8, HasSpeed = 16, IsCancelled = 32, IsEstimated = 64;

    public static byte[] Encode(IReadOnlyList<ActivityRecord> block)
    {
        using var buffer = new MemoryStream(64 + block.Count * 64);
        using var writer = new BinaryWriter(buffer);
        var strings = new Dictionary<string, int>(StringComparer.Ordinal);
        var clients = new Dictionary<IPAddress, string>();
        writer.Write(Version1);
        writer.Write7BitEncodedInt(block.Count);
        long previousTicks = 0;
        foreach (var r in block)
        {
            writer.Write7BitEncodedInt64(r.Id);
            writer.Write7BitEncodedInt64(ZigZag(r.StartedAt.Ticks - previousTicks));
            previousTicks = r.StartedAt.Ticks;
            Text(writer, strings, r.Endpoint);
            Text(writer, strings, r.Method);
            Text(writer, strings, r.Key);
            Text(writer, strings, r.ClientText(clients));
            Text(writer, strings, r.Model);
            Text(writer, strings, r.ResolvedModel);
            Text(writer, strings, r.Host);
            Text(writer, strings, r.Error);
            writer.Write((byte)r.State);
            var flags = (r.Status is null ? 0 : HasStatus) | (r.TtftMs is null ? 0 : HasTtft) | (r.PromptTokens is null ? 0 : HasPrompt)
                | (r.CompletionTokens is null ? 0 : HasCompletion) | (r.TokensPerSecond is null ? 0 : HasSpeed)
                | (r.Cancelled ? IsCancelled : 0) | (r.TokensEstimated ? IsEstimated : 0);
            writer.Write((byte)flags);
            if (r.Status is { } status) writer.Write7BitEncodedInt(status);
            if (r.TtftMs is { } ttft) writer.Write7BitEncodedInt64(ttft);
            if (r.PromptTokens is { } prompt) writer.Write7BitEncodedInt64(prompt);
            if (r.CompletionTokens is { } completion) writer.Write7BitEncodedInt64(completion);
            if (r.TokensPerSecond is { } speed) writer.Write(speed);
            writer.Write7BitEncodedInt64(r.HeldMs);
            writer.Write7BitEncodedInt64(r.LoadMs);
            writer.Write7BitEncodedInt64(r.DurationMs);
            writer.Write7BitEncodedInt64(r.BytesIn);
            writer.Write7BitEncodedInt64(r.BytesOut);
            writer.Write7BitEncodedInt64(r.GpuMs);
            // Captured bodies are rare and large: not worth a table entry.
            Body(writer, r.RequestBody);
            Body(writer, r.ResponseBody);
        }
        writer.Flush();
        return buffer.ToArray();
    }

    /// <exception cref="FormatException">The block is neither form, or is cut short.</exception>
    public static List<ActivityRecord> Decode(byte[] data)
    {
        if (data.Length > 0 && data[0] == (byte)'[') return JsonSerializer.Deserialize(data, ActivityJson.Default.ListActivityRecord) ?? [];
        if (data.Length == 0 || data[0] != Version1) throw new FormatException($"an activity block of an unknown form ({(data.Length == 0 ? "empty" : $"first byte {data[0]}")})");
        try
        {
            using var reader = new BinaryReader(new MemoryStream(data, 1, data.Length - 1, writable: false));
            var strings = new List<string>();
            var count = reader.Read7BitEncodedInt();
            var records = new List<ActivityRecord>(Math.Min(count, 4096));
            long ticks = 0;
            for (var i = 0; i < count; i++)
            {
                var id = reader.Read7BitEncodedInt64();
                ticks += UnZigZag(reader.Read7BitEncodedInt64());
                var record = new ActivityRecord
                {
                    Id = id,
                    StartedAt = new DateTime(ticks, DateTimeKind.Utc),
                    Endpoint = Text(reader, strings) ?? "",
                    Method = Text(reader, strings) ?? "",
                    Key = Text(reader, strings),
                    Client = Text(reader, strings),
                    Model = Text(reader, strings),
                    ResolvedModel = Text(reader, strings),
                    Host = Text(reader, strings),
                    Error = Text(reader, strings),
                    State = (ActivityState)reader.ReadByte(),
                };
                int flags = reader.ReadByte();
                if ((flags & HasStatus) != 0) record.Status = reader.Read7BitEncodedInt();
                if ((flags & HasTtft) != 0) record.TtftMs = reader.Read7BitEncodedInt64();
                if ((flags & HasPrompt) != 0) record.PromptTokens = reader.Read7BitEncodedInt64();
                if ((flags & HasCompletion) != 0) record.CompletionTokens = reader.Read7BitEncodedInt64();
                if ((flags & HasSpeed) != 0) record.TokensPerSecond = reader.ReadDouble();
                record.Cancelled = (flags & IsCancelled) != 0;
                record.TokensEstimated = (flags & IsEstimated) != 0;
                record.HeldMs = reader.Read7BitEncodedInt64();
                record.LoadMs = reader.Read7BitEncodedInt64();
                record.DurationMs = reader.Read7BitEncodedInt64();
                record.BytesIn = reader.Read7BitEncodedInt64();
                record.BytesOut = reader.Read7BitEncodedInt64();
                record.GpuMs = reader.Read7BitEncodedInt64();
                record.RequestBody = Body(reader);
                record.ResponseBody = Body(reader);
                records.Add(record);
            }
            return records;
        }
        catch (Exception ex) when (ex is EndOfStreamException or IOException or ArgumentException or OverflowException)
        {
            throw new FormatException("an activity block is cut short or damaged", ex);
        }
    }

    // A string: 0 for null, 1 followed by the text the first time, 2 + its index after that.
    private static void Text(BinaryWriter writer, Dictionary<string, int> table, string? value)
    {
        if (value is null)
        {
            writer.Write7BitEncodedInt(0);
        }
        else if (table.TryGetValue(value, out var index))
        {
            writer.Write7BitEncodedInt(index + 2);
        }
        else
        {
            table[value] = table.Count;
            writer.Write7BitEncodedInt(1);
            writer.Write(value);
        }
    }

    private static string? Text(BinaryReader reader, List<string> table)
    {
        var code = reader.Read7BitEncodedInt();
        if (code == 0) return null;
        if (code == 1)
        {
            var value = reader.ReadString();
            table.Add(value);
            return value;
        }
        var index = code - 2;
        if ((uint)index >= (uint)table.Count) throw new FormatException("an activity block refers to a string it does not hold");
        return table[index];
    }

    private static void Body(BinaryWriter writer, string? body)
    {
        writer.Write(body is not null);
        if (body is not null) writer.Write(body);
    }

    private static string? Body(BinaryReader reader) => reader.ReadBoolean() ? reader.ReadString() : null;

    private static long ZigZag(long value) => (value << 1) ^ (value >> 63);

    private static long UnZigZag(long value) => (long)((ulong)value >> 1) ^ -(value & 1);
}
