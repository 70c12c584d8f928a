using System.Runtime.InteropServices;
using System.Text;

namespace LmsProxy.Proxy;

/// <summary>
/// A pass-through response body that notices the id of the response it carries, without holding anything back: every
/// write goes straight on, flushes included. /v1/responses: the first "id" (the response object's, or the
/// response.created event's); /api/v1/chat: "response_id" (in the body, or in the chat.end event at the end).
/// The id is reported before the bytes that carry it reach the client, so the next turn always finds it.
/// </summary>
internal sealed class ResponseIdCapture(Stream inner, byte[] field, Action<string> found) : WriteOnlyStream
{
    private const int MaxIdLength = 256;
    private readonly List<byte> _window = [];
    private bool _done;

    public static ResponseIdCapture? For(HttpRequest request, Stream inner, Action<string> found) =>
        RequestPaths.ResponseIdField(request) is { } field ? new(inner, field, found) : null;

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Scan(buffer.Span);
        await inner.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        Scan(buffer.AsSpan(offset, count));
        inner.Write(buffer, offset, count);
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    private void Scan(ReadOnlySpan<byte> chunk)
    {
        if (_done) return;
        foreach (var b in chunk) _window.Add(b);
        ReadOnlySpan<byte> text = CollectionsMarshal.AsSpan(_window);
        var at = text.IndexOf(field);
        if (at < 0)
        {
            // Keep only a tail long enough to hold the start of the field name across writes.
            if (_window.Count > field.Length) _window.RemoveRange(0, _window.Count - field.Length);
            return;
        }
        var rest = text[(at + field.Length)..];
        var i = 0;
        while (i < rest.Length && rest[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or (byte)':') i++;
        if (i == rest.Length) return; // the value is in the next write
        if (rest[i] != (byte)'"')
        {
            // "id": not a string here (a nested object's number id, say): look further on.
            _window.RemoveRange(0, at + field.Length);
            return;
        }
        var end = rest[(i + 1)..].IndexOf((byte)'"');
        if (end < 0)
        {
            if (rest.Length - i > MaxIdLength) _done = true; // not an id worth remembering
            return;
        }
        _done = true;
        var id = Encoding.UTF8.GetString(rest.Slice(i + 1, end));
        _window.Clear();
        if (id.Length is > 0 and <= MaxIdLength) found(id);
    }
}
