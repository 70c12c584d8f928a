using System.Globalization;
using System.Text.RegularExpressions;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>Loads and unloads models on one LM Studio, exactly (never a similar name, never a duplicate instance).</summary>
internal interface IModelLoader
{
    /// <summary>"lms" or "rest".</summary>
    string Name { get; }

    /// <summary>Returns the identifier API requests use for the loaded instance.</summary>
    /// <exception cref="ModelLoadException">The load failed; the message is safe to show a client.</exception>
    Task<string> LoadAsync(CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken);

    /// <summary>Unloads one instance; an instance that is already gone is not an error.</summary>
    Task UnloadAsync(string instanceId, CancellationToken cancellationToken);
}

/// <summary>Why LM Studio refused a load, read from its words (status codes vary by version): capacity-signals.md §6.</summary>
internal enum LoadFailureKind
{
    /// <summary>Not a matter of memory: the model is broken, lms failed, LM Studio is too old.</summary>
    Other,

    /// <summary>LM Studio's guardrail or the engine ran out of memory: making room helps.</summary>
    Capacity,

    /// <summary>An engine failure that may be memory: making room once may help.</summary>
    Ambiguous,
}

internal sealed partial class ModelLoadException(string message, LoadFailureKind kind = LoadFailureKind.Other, long? requiredBytes = null, Exception? inner = null)
    : Exception(message, inner)
{
    public LoadFailureKind Kind { get; } = kind;

    /// <summary>The memory LM Studio said the model needs ("requires approximately 14.36 GB"), when it said so.</summary>
    public long? RequiredBytes { get; } = requiredBytes;

    /// <summary>An exception whose kind is read from what LM Studio or lms printed.</summary>
    public static ModelLoadException From(string prefix, string output) =>
        new(prefix + Excerpt.Of(output), Classify(output), ParseRequiredBytes(output));

    private static readonly string[] CapacityWords =
    [
        "insufficient system resources", "Model loading was stopped", "Model loading aborted", "overload your system",
        "Not enough resources to load", "cudaMalloc failed", "out of memory", "unable to allocate", "failed to allocate",
    ];

    private static readonly string[] AmbiguousWords =
        ["model_load_failed", "SIGABRT", "exited before becoming healthy", "Engine protocol startup was aborted"];

    public static LoadFailureKind Classify(string text)
    {
        if (CapacityWords.Any(w => text.Contains(w, StringComparison.OrdinalIgnoreCase))) return LoadFailureKind.Capacity;
        if (AmbiguousWords.Any(w => text.Contains(w, StringComparison.OrdinalIgnoreCase))) return LoadFailureKind.Ambiguous;
        return LoadFailureKind.Other;
    }

    private static long? ParseRequiredBytes(string text)
    {
        var match = Approximately().Match(text);
        if (!match.Success || !double.TryParse(match.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var amount)) return null;
        var unit = match.Groups[2].Value.ToUpperInvariant();
        var factor = unit switch { "GIB" => 1L << 30, "MIB" => 1L << 20, "MB" => 1_000_000L, _ => 1_000_000_000L };
        return (long)(amount * factor);
    }

    [GeneratedRegex(@"requires approximately ([\d.]+)\s*(GB|GiB|MB|MiB)", RegexOptions.IgnoreCase)]
    private static partial Regex Approximately();
}

/// <summary>LM Studio answers but refuses the proxy's own calls (its authentication is on and the host's API key is not set).</summary>
internal sealed class UpstreamRefusedException(string message) : Exception(message);

/// <summary>LM Studio could not be reached at all.</summary>
internal sealed class UpstreamUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

internal static class Excerpt
{
    /// <summary>A short, single-line, printable piece of untrusted output, for errors and logs.</summary>
    public static string Of(string? text, int max = 300)
    {
        if (string.IsNullOrWhiteSpace(text)) return "(no output)";
        var chars = text.Trim().Select(c => char.IsControl(c) ? ' ' : c).ToArray();
        var flat = string.Join(' ', new string(chars).Split(' ', StringSplitOptions.RemoveEmptyEntries));
        return flat.Length <= max ? flat : flat[..max] + "…";
    }
}
