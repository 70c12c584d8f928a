namespace LmsProxy.Configuration;

/// <summary>How models are loaded and kept: the lms CLI, time limits, preloads, per-model settings, aliases (keys directly under <c>LmsProxy</c>).</summary>
internal sealed class LoadingOptions
{
    public LmsCliOptions Lms { get; set; } = new();

    /// <summary>Longest a load (lms or REST) may take before it is abandoned (and its process killed).</summary>
    public TimeSpan LoadTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>A load whose reported progress (lms's percentage) does not rise for this long is killed; 00:00:00: never.</summary>
    public TimeSpan LoadStallTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How often the proxy re-reads each host's model list and re-loads preloaded models it lost.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How often each host's /lmstudio-greeting is probed (YARP active health check).</summary>
    public TimeSpan HealthCheckInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest LM Studio may take to answer the proxy's own calls (its model list, probes); past it the host counts as unavailable.</summary>
    public TimeSpan ApiTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Models loaded in the background at start-up and kept loaded; they are pinned (never unloaded by the proxy).</summary>
    public List<string> Preload { get; set; } = [];

    /// <summary>Names clients send, mapped to LM Studio model keys.</summary>
    public Dictionary<string, string> Aliases { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Per-model load settings, by LM Studio model key.</summary>
    public Dictionary<string, ModelLoadSettings> Models { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    public ModelLoadSettings SettingsFor(string modelKey) =>
        Models.TryGetValue(modelKey, out var settings) ? settings : ModelLoadSettings.Default;

    public string ResolveAlias(string model) => Aliases.TryGetValue(model, out var target) ? target : model;
}

internal sealed class LmsCliOptions
{
    /// <summary>Path to the lms executable; empty means: search PATH, then ~/.lmstudio/bin/lms.</summary>
    public string? Path { get; set; }

    /// <summary>Longest one lms run may take; past it the process is killed.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(5);
}

internal sealed class ModelLoadSettings
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
