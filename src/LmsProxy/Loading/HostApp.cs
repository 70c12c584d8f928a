using System.Collections.Concurrent;
using System.Text.Json;

namespace LmsProxy.Loading;

/// <summary>
/// Which app answers on a host's port. LM Studio Bionic (F26) serves the same API on the same port and is handled as an
/// LM Studio host; its greeting is assumed to name it (an "app" or "product" field mentioning bionic), as no source
/// shows the real one.
/// </summary>
internal sealed record HostApp(string Name, string? Version)
{
    public bool IsBionic => Name.Contains("Bionic", StringComparison.OrdinalIgnoreCase);

    public static HostApp? FromGreeting(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("lmstudio", out var flag) || flag.ValueKind != JsonValueKind.True) return null;
            var app = Field(root, "app") ?? Field(root, "product") ?? Field(root, "package");
            var version = Field(root, "version");
            return app?.Contains("bionic", StringComparison.OrdinalIgnoreCase) == true ? new("LM Studio Bionic", version) : new("LM Studio", version);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string? Field(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}

/// <summary>Instance id → the variant key whose weights it holds, as read right after the proxy loaded it (F3).</summary>
internal sealed class VariantLedger
{
    private readonly ConcurrentDictionary<string, string> _byInstance = new(StringComparer.OrdinalIgnoreCase);

    public void Record(string instanceId, string variant) => _byInstance[instanceId] = variant;

    public void Forget(string instanceId) => _byInstance.TryRemove(instanceId, out _);

    public string? VariantOf(string instanceId) => _byInstance.GetValueOrDefault(instanceId);
}
