using System.Buffers;
using System.Buffers.Text;

namespace LmsProxy.Activity;

/// <summary>
/// Reads a response as it passes, line by line, for what the record needs: the first content event of a stream,
/// the number of content events, and the token counts LM Studio reports (OpenAI and Anthropic <c>usage</c>,
/// <c>stats</c> of /api/v0 and /api/v1/chat, and chat.end). Nothing is held back from the client: only the current
/// line is kept, and of a very long line only its end (where usage sits in a whole JSON body).
/// </summary>
internal sealed class TokenScanner
{
    private const int MaxLine = 32 * 1024;
    private const int KeptTail = 8 * 1024;

    private static ReadOnlySpan<byte> DataPrefix => "data:"u8;
    private static ReadOnlySpan<byte> TypePrefix => "{\"type\":"u8;
    private static ReadOnlySpan<byte> TokensMark => "_tokens\""u8;

    private byte[]? _line;
    private int _length;

    public bool EventStream { get; set; }
    public long ContentEvents { get; private set; }
    public long FirstContentTimestamp { get; private set; }
    public long? PromptTokens { get; private set; }
    public long? CompletionTokens { get; private set; }
    public double? TokensPerSecond { get; private set; }

    public void Feed(ReadOnlySpan<byte> chunk, long now)
    {
        while (!chunk.IsEmpty)
        {
            var newline = chunk.IndexOf((byte)'\n');
            if (newline < 0)
            {
                Append(chunk);
                return;
            }
            if (_length == 0)
            {
                Line(chunk[..newline], now);
            }
            else
            {
                Append(chunk[..newline]);
                Line(_line.AsSpan(0, _length), now);
                _length = 0;
            }
            chunk = chunk[(newline + 1)..];
        }
    }

    /// <summary>The last line, when the body did not end with a newline (a compact JSON body); and the buffer goes back.</summary>
    public void End(long now)
    {
        if (_length > 0) Line(_line.AsSpan(0, _length), now);
        _length = 0;
        if (_line is not null) ArrayPool<byte>.Shared.Return(_line);
        _line = null;
    }

    private void Append(ReadOnlySpan<byte> part)
    {
        if (_length + part.Length > MaxLine)
        {
            // Keep the end of a long line: usage and stats come last in a whole body.
            if (part.Length >= KeptTail)
            {
                part = part[^KeptTail..];
                _length = 0;
            }
            else
            {
                var keep = Math.Min(_length, KeptTail - part.Length);
                _line.AsSpan(_length - keep, keep).CopyTo(_line);
                _length = keep;
            }
        }
        if (_line is null || _line.Length < _length + part.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(1024, (_length + part.Length) * 2));
            _line?.AsSpan(0, _length).CopyTo(bigger);
            if (_line is not null) ArrayPool<byte>.Shared.Return(_line);
            _line = bigger;
        }
        part.CopyTo(_line.AsSpan(_length));
        _length += part.Length;
    }

    private void Line(ReadOnlySpan<byte> line, long now)
    {
        if (EventStream)
        {
            if (!line.StartsWith(DataPrefix)) return;
            line = line[DataPrefix.Length..].TrimStart((byte)' ');
            if (IsContent(line))
            {
                ContentEvents++;
                if (FirstContentTimestamp == 0) FirstContentTimestamp = now;
            }
        }
        if (line.IndexOf(TokensMark) >= 0) Tokens(line);
    }

    /// <summary>
    /// A stream event that carries generated text (or a tool call's arguments). Typed events (Anthropic, Responses,
    /// /api/v1/chat) name it: a type ending in "delta" (but Anthropic's message_delta, which carries the stop reason);
    /// OpenAI chunks carry a non-empty content, reasoning, text, or tool_calls.
    /// </summary>
    internal static bool IsContent(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith(TypePrefix))
        {
            var type = data[TypePrefix.Length..].TrimStart((byte)' ');
            if (type.IsEmpty || type[0] != (byte)'"') return false;
            type = type[1..];
            var end = type.IndexOf((byte)'"');
            if (end < 0) return false;
            type = type[..end];
            return type.EndsWith("delta"u8) && !type.SequenceEqual("message_delta"u8);
        }
        return NonEmptyString(data, "\"content\""u8) || NonEmptyString(data, "\"text\""u8) || NonEmptyString(data, "\"reasoning_content\""u8)
            || NonEmptyString(data, "\"reasoning\""u8) || data.IndexOf("\"tool_calls\":["u8) >= 0;
    }

    private static bool NonEmptyString(ReadOnlySpan<byte> data, ReadOnlySpan<byte> key)
    {
        var value = ValueAfter(data, key);
        return value.Length >= 2 && value[0] == (byte)'"' && value[1] != (byte)'"';
    }

    private void Tokens(ReadOnlySpan<byte> text)
    {
        // The last value of each wins: Anthropic's message_delta carries the final output_tokens after message_start's 1.
        if ((Number(text, "\"prompt_tokens\""u8) ?? Number(text, "\"input_tokens\""u8)) is { } prompt) PromptTokens = prompt;
        if ((Number(text, "\"completion_tokens\""u8) ?? Number(text, "\"output_tokens\""u8) ?? Number(text, "\"total_output_tokens\""u8)) is { } completion)
        {
            CompletionTokens = completion;
        }
        var rate = ValueAfter(text, "\"tokens_per_second\""u8);
        if (!rate.IsEmpty && Utf8Parser.TryParse(rate, out double perSecond, out _)) TokensPerSecond = perSecond;
    }

    private static long? Number(ReadOnlySpan<byte> text, ReadOnlySpan<byte> key)
    {
        var value = ValueAfter(text, key, last: true);
        return !value.IsEmpty && Utf8Parser.TryParse(value, out long number, out _) ? number : null;
    }

    /// <summary>What follows <c>"key":</c> (spaces skipped), or empty.</summary>
    private static ReadOnlySpan<byte> ValueAfter(ReadOnlySpan<byte> text, ReadOnlySpan<byte> key, bool last = false)
    {
        var at = last ? text.LastIndexOf(key) : text.IndexOf(key);
        if (at < 0) return default;
        var rest = text[(at + key.Length)..].TrimStart(" \t"u8);
        if (rest.IsEmpty || rest[0] != (byte)':') return default;
        return rest[1..].TrimStart(" \t"u8);
    }
}
