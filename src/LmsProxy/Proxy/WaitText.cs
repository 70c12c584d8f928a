using System.Globalization;
using System.Text.Json.Serialization;
using LmsProxy.Scheduling;

namespace LmsProxy.Proxy;

/// <summary>
/// A waiting request's state in words, for the keep-alives: an SSE comment line (<c>: loading qwen/qwen3-8b 37% eta 21s
/// queue 3</c>, which every client ignores) and a sentence for chat UIs that show reasoning as thinking.
/// </summary>
internal static class WaitText
{
    /// <summary>The comment line, without its leading ": " and newline.</summary>
    public static string Comment(string model, WaitState? state, TimeSpan waited)
    {
        if (state is null) return $"waiting for {model} {Seconds(waited.TotalMilliseconds)}s";
        var parts = new List<string> { Doing(state, model) };
        if (state.Progress is { } p) parts.Add(Percent(p) + "%");
        if (state.EtaMs is { } eta) parts.Add($"eta {Seconds(eta)}s");
        parts.Add($"queue {state.Position}");
        return string.Join(' ', parts);
    }

    /// <summary>One line a person reads, e.g. "Loading qwen/qwen3-8b: 37%, about 21 s left. You are 3rd in line."</summary>
    public static string Sentence(string model, WaitState? state, TimeSpan waited)
    {
        if (state is null) return $"Waiting for {model} ({Seconds(waited.TotalMilliseconds)} s so far).\n";
        var doing = Doing(state, model);
        var text = char.ToUpperInvariant(doing[0]) + doing[1..];
        var details = new List<string>();
        if (state.Progress is { } p) details.Add(Percent(p) + "%");
        details.Add(state.EtaMs is { } eta ? $"about {Seconds(eta)} s left" : $"{Seconds(waited.TotalMilliseconds)} s so far");
        var line = $"{text}: {string.Join(", ", details)}.";
        if (state.Queue > 1) line += $" You are {Ordinal(state.Position)} of {state.Queue} waiting.";
        return line + "\n";
    }

    private static string Doing(WaitState state, string model) => state.WaitingFor switch
    {
        "load" => $"loading {model}",
        "swap" => $"swapping in {model}",
        "slot" => $"waiting for a free slot on {model}",
        _ => $"waiting for room to load {model}",
    };

    private static string Percent(double fraction) => ((int)Math.Floor(fraction * 100)).ToString(CultureInfo.InvariantCulture);

    private static string Seconds(double ms) => ((long)Math.Ceiling(ms / 1000)).ToString(CultureInfo.InvariantCulture);

    private static string Ordinal(int n) => n + (n % 100 is >= 11 and <= 13 ? "th" : (n % 10) switch { 1 => "st", 2 => "nd", 3 => "rd", _ => "th" });
}

/// <summary>A chat.completion.chunk whose delta carries reasoning_content (as llama-swap sends while it loads).</summary>
internal sealed record ReasoningChunk(string Id, string Object, long Created, string Model, IReadOnlyList<ReasoningChoice> Choices);

internal sealed record ReasoningChoice(int Index, ReasoningDelta Delta, string? Logprobs, string? FinishReason);

internal sealed record ReasoningDelta(string Role, string ReasoningContent);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(ReasoningChunk))]
internal sealed partial class WaitJson : JsonSerializerContext;
