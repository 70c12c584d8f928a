using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace LmStudioSimulator;

/// <summary>Server-sent events as LM Studio writes them: each event flushed on its own, so a client sees it at once.</summary>
internal static class Sse
{
    public static void Begin(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
    }

    /// <summary>"event: name" (when named) and "data: json", then a blank line.</summary>
    public static async Task WriteAsync(HttpContext context, string? eventName, string data, CancellationToken cancellationToken)
    {
        var text = eventName is null ? $"data: {data}\n\n" : $"event: {eventName}\ndata: {data}\n\n";
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(text), cancellationToken);
        await context.Response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>Writes named events whose data carries their own "type", with the token delay between them.</summary>
    public static async Task WriteAllAsync(InferenceCall call, IEnumerable<(string Name, object Data)> events)
    {
        Begin(call.Context);
        var first = true;
        foreach (var (name, data) in events)
        {
            if (!first) await Task.Delay(call.Options.TokenDelay, call.Aborted);
            first = false;
            await WriteAsync(call.Context, name, JsonSerializer.Serialize(data), call.Aborted);
        }
    }

    /// <summary>The text in <paramref name="pieces"/> consecutive fragments that join back to it, like token deltas.</summary>
    public static List<string> Split(string text, int pieces)
    {
        pieces = Math.Clamp(pieces, 1, Math.Max(1, text.Length));
        var size = (int)Math.Ceiling(text.Length / (double)pieces);
        var fragments = new List<string>();
        for (var start = 0; start < text.Length; start += size) fragments.Add(text.Substring(start, Math.Min(size, text.Length - start)));
        return fragments.Count == 0 ? [""] : fragments;
    }
}

internal static class Ids
{
    /// <summary>A random id like LM Studio's ("resp_" and 48 hex digits): unique across hosts, as a counter would not be.</summary>
    public static string New(string prefix, int hexDigits = 48) => prefix + RandomNumberGenerator.GetHexString(hexDigits, lowercase: true);
}
