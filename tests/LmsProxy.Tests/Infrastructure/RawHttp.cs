using System.Net.Sockets;
using System.Text;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>
/// One request written byte for byte on a TCP connection (for framing no HTTP client would produce), and the answer
/// read until the server closes the connection or the body named by Content-Length has arrived.
/// </summary>
public static class RawHttp
{
    public sealed record Answer(int Status, string Head, string Body)
    {
        public string? Header(string name) => Head.Split("\r\n").Skip(1)
            .Where(l => l.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase)).Select(l => l[(name.Length + 1)..].Trim()).FirstOrDefault();
    }

    public static async Task<Answer> SendAsync(Uri server, string request) => await SendAsync(server, Encoding.Latin1.GetBytes(request));

    public static async Task<Answer> SendAsync(Uri server, byte[] request)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(request, timeout.Token);
        await stream.FlushAsync(timeout.Token);

        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            int read;
            try
            {
                read = await stream.ReadAsync(buffer, timeout.Token);
            }
            catch (IOException)
            {
                break; // a reset after the answer
            }
            if (read == 0) break;
            received.Write(buffer, 0, read);
            if (Parse(received.ToArray()) is { } complete) return complete;
        }
        return Parse(received.ToArray(), final: true) ?? throw new InvalidOperationException("No HTTP answer: " + Encoding.Latin1.GetString(received.ToArray()));
    }

    private static Answer? Parse(byte[] bytes, bool final = false)
    {
        var text = Encoding.UTF8.GetString(bytes);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) return null;
        var head = text[..end];
        var body = text[(end + 4)..];
        var status = int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var answer = new Answer(status, head, body);
        if (answer.Header("Content-Length") is { } length && Encoding.UTF8.GetByteCount(body) >= int.Parse(length, System.Globalization.CultureInfo.InvariantCulture)) return answer;
        if (string.Equals(answer.Header("Transfer-Encoding"), "chunked", StringComparison.OrdinalIgnoreCase) && Dechunk(body) is { } whole) return answer with { Body = whole };
        return final ? answer : null;
    }

    /// <summary>The body of a chunked answer once its last chunk has arrived (ASCII bodies: sizes count characters).</summary>
    private static string? Dechunk(string chunked)
    {
        var body = new StringBuilder();
        var at = 0;
        while (true)
        {
            var lineEnd = chunked.IndexOf("\r\n", at, StringComparison.Ordinal);
            if (lineEnd < 0) return null;
            var size = Convert.ToInt32(chunked[at..lineEnd].Split(';')[0], 16);
            if (size == 0) return body.ToString();
            if (lineEnd + 2 + size > chunked.Length) return null;
            body.Append(chunked, lineEnd + 2, size);
            at = lineEnd + 2 + size + 2;
        }
    }
}
