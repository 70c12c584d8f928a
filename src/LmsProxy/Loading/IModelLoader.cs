using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>Loads one downloaded model into LM Studio, exactly (never a similar name, never a duplicate instance).</summary>
public interface IModelLoader
{
    /// <summary>Returns the identifier API requests use for the loaded instance.</summary>
    /// <exception cref="ModelLoadException">The load failed; the message is safe to show a client.</exception>
    Task<string> LoadAsync(CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken);
}

public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>LM Studio answers but refuses the proxy's own calls (its authentication is on and LmsProxy:UpstreamApiKey is not set).</summary>
public sealed class UpstreamRefusedException(string message) : Exception(message);

/// <summary>LM Studio could not be reached at all.</summary>
public sealed class UpstreamUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

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
