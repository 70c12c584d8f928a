namespace LmsProxy.Activity;

/// <summary>
/// The response body as the client receives it, passed straight on (flushes included), counted and read on the way
/// for the record: bytes out, the first byte, the first content event of a stream, tokens. An operator's cancel
/// takes it over: it writes the protocol's error event and drops whatever the upstream still sends.
/// </summary>
internal sealed class ResponseTap(Stream inner, HttpResponse response, ActivityRecord record, TimeProvider time, int captureLimit) : Proxy.WriteOnlyStream
{
    private readonly TokenScanner _scanner = new();
    private MemoryStream? _capture;
    private int _busy;
    private int _interrupted;
    private long _firstByte;

    public Stream Inner => inner;
    public ActivityRecord Record => record;
    public bool Interrupted => Volatile.Read(ref _interrupted) != 0;
    public long FirstByteTimestamp => _firstByte;
    public TokenScanner Scanner => _scanner;
    public bool EventStream => _scanner.EventStream;

    /// <summary>Not async itself: Kestrel's writes nearly always complete at once, and then no state machine is made.</summary>
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!Enter()) return ValueTask.CompletedTask;
        ValueTask write;
        try
        {
            Seen(buffer.Span);
            write = inner.WriteAsync(buffer, cancellationToken);
        }
        catch
        {
            Volatile.Write(ref _busy, 0);
            throw;
        }
        if (!write.IsCompleted) return LeaveAfterAsync(write);
        Volatile.Write(ref _busy, 0);
        return write;
    }

    private async ValueTask LeaveAfterAsync(ValueTask write)
    {
        try
        {
            await write;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        if (!Enter()) return;
        try
        {
            Seen(buffer.AsSpan(offset, count));
            inner.Write(buffer, offset, count);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Interrupted ? Task.CompletedTask : inner.FlushAsync(cancellationToken);

    public override void Flush()
    {
        if (!Interrupted) inner.Flush();
    }

    /// <summary>The operator's cancel: waits out a write under way, then writes <paramref name="error"/> itself; later writes are dropped.</summary>
    public async Task InterruptAsync(byte[] error, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _interrupted, 1) != 0) return;
        for (var i = 0; Volatile.Read(ref _busy) != 0 && i < 200; i++) await Task.Delay(5, cancellationToken);
        try
        {
            await inner.WriteAsync(error, cancellationToken);
            await inner.FlushAsync(cancellationToken);
            record.BytesOut += error.Length;
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The client left meanwhile: no one to tell.
        }
    }

    /// <summary>The end of the body: the last line is read, the capture is cut.</summary>
    public void Complete(long now)
    {
        _scanner.End(now);
        if (_capture is not null) record.ResponseBody = System.Text.Encoding.UTF8.GetString(_capture.GetBuffer(), 0, (int)_capture.Length);
    }

    private bool Enter()
    {
        // Full fences on both sides (here and in InterruptAsync): either the cancel sees this write, or this write sees the cancel.
        Interlocked.Exchange(ref _busy, 1);
        if (Volatile.Read(ref _interrupted) == 0) return true;
        Volatile.Write(ref _busy, 0);
        return false;
    }

    private void Seen(ReadOnlySpan<byte> chunk)
    {
        var now = time.GetTimestamp();
        if (_firstByte == 0)
        {
            _firstByte = now;
            _scanner.EventStream = response.ContentType?.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) == true;
        }
        // Keep-alives pass here too while the request waits: only bytes after forwarding make it "streaming".
        if (record.State == ActivityState.Forwarding) record.State = ActivityState.Streaming;
        record.BytesOut += chunk.Length;
        _scanner.Feed(chunk, now);
        if (captureLimit > 0)
        {
            _capture ??= new MemoryStream();
            var room = captureLimit - (int)_capture.Length;
            if (room > 0) _capture.Write(chunk[..Math.Min(room, chunk.Length)]);
        }
    }
}
