namespace LmsProxy.Configuration;

/// <summary>The <c>LmsProxy</c> configuration section. Every default here is also written out in appsettings.json.</summary>
public sealed class LmsProxyOptions
{
    public const string SectionName = "LmsProxy";

    /// <summary>LM Studio's base URL (scheme, host, port; no path).</summary>
    public Uri Upstream { get; set; } = new("http://localhost:1234");

    /// <summary>Token the proxy itself sends to LM Studio (model list, loads) when LM Studio's authentication is on.</summary>
    public string? UpstreamApiKey { get; set; }

    /// <summary>How models are loaded: auto (lms when found, else REST), lms, or rest.</summary>
    public LoaderKind Loader { get; set; } = LoaderKind.Auto;

    public LmsCliOptions Lms { get; set; } = new();

    /// <summary>Longest a request is held while its model loads before it gets a 503.</summary>
    public TimeSpan HoldTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Most requests held per model at once; one more gets a 503 with Retry-After.</summary>
    public int MaxHeldPerModel { get; set; } = 1000;

    /// <summary>Longest a load (lms or REST) may take before it is abandoned (and its process killed).</summary>
    public TimeSpan LoadTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often the proxy re-reads LM Studio's model list and re-loads preloaded models it lost.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Longest LM Studio may stay silent on a forwarded request (long prompt processing counts).</summary>
    public TimeSpan ActivityTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Longest the proxy waits to open a connection to LM Studio.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>How many times a request is re-sent after LM Studio answers "No models loaded".</summary>
    public int NotLoadedRetries { get; set; } = 2;

    /// <summary>Models loaded in the background at start-up and kept loaded.</summary>
    public List<string> Preload { get; set; } = [];

    /// <summary>Inbound API keys; when any are set, every request but /healthz and /readyz must carry one.</summary>
    public List<string> ApiKeys { get; set; } = [];

    /// <summary>With ApiKeys set: whether /, /status and /metrics stay open without a key.</summary>
    public bool OpenStatus { get; set; }

    /// <summary>With ApiKeys set: whether the client's Authorization / x-api-key header is forwarded to LM Studio.</summary>
    public bool ForwardClientKey { get; set; }

    /// <summary>Names clients send, mapped to LM Studio model keys.</summary>
    public Dictionary<string, string> Aliases { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Per-model load settings, by LM Studio model key.</summary>
    public Dictionary<string, ModelLoadSettings> Models { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    public ModelLoadSettings SettingsFor(string modelKey) =>
        Models.TryGetValue(modelKey, out var settings) ? settings : ModelLoadSettings.Default;

    public string ResolveAlias(string model) => Aliases.TryGetValue(model, out var target) ? target : model;
}

public enum LoaderKind
{
    Auto,
    Lms,
    Rest,
}

public sealed class LmsCliOptions
{
    /// <summary>Path to the lms executable; empty means: search PATH, then ~/.lmstudio/bin/lms.</summary>
    public string? Path { get; set; }

    /// <summary>Longest one lms run may take; past it the process is killed.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(5);
}

public sealed class ModelLoadSettings
{
    public static readonly ModelLoadSettings Default = new();

    /// <summary>Context length in tokens (lms -c, REST context_length).</summary>
    public int? ContextLength { get; set; }

    /// <summary>GPU offload: off, max, or a ratio 0..1 (lms only).</summary>
    public string? Gpu { get; set; }

    /// <summary>Idle seconds before LM Studio unloads the model (lms only).</summary>
    public int? Ttl { get; set; }

    /// <summary>Concurrent predictions (lms only).</summary>
    public int? Parallel { get; set; }
}
