namespace LmsProxy.Configuration;

/// <summary>The <c>LmsProxy</c> configuration section. Every default here is also written out in appsettings.json.</summary>
internal sealed class LmsProxyOptions
{
    public const string SectionName = "LmsProxy";

    /// <summary>LM Studio's base URL (scheme, host, port; no path), used when <see cref="Hosts"/> is empty.</summary>
    public Uri Upstream { get; set; } = new("http://localhost:1234");

    /// <summary>Token the proxy sends to <see cref="Upstream"/> (model list, loads) when LM Studio's authentication is on.</summary>
    public string? UpstreamApiKey { get; set; }

    /// <summary>How models are loaded on <see cref="Upstream"/>: auto (lms when found and LM Studio is on this machine, else REST), lms, or rest.</summary>
    public LoaderKind Loader { get; set; } = LoaderKind.Auto;

    /// <summary>Several LM Studio hosts behind one base URL, by name. Empty: <see cref="Upstream"/> is the one host.</summary>
    public Dictionary<string, LmStudioHostOptions> Hosts { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Memory limits and unload rules, for every host unless a host overrides them.</summary>
    public CapacityOptions Capacity { get; set; } = new();

    public LmsCliOptions Lms { get; set; } = new();

    /// <summary>Longest a request is held while its model loads (re-sends included) before it gets a 503.</summary>
    public TimeSpan HoldTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Most requests held per model at once; one more gets a 503 with Retry-After.</summary>
    public int MaxHeldPerModel { get; set; } = 1000;

    /// <summary>Longest a load (lms or REST) may take before it is abandoned (and its process killed).</summary>
    public TimeSpan LoadTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often the proxy re-reads each host's model list and re-loads preloaded models it lost.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How often each host's /lmstudio-greeting is probed (YARP active health check).</summary>
    public TimeSpan HealthCheckInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest LM Studio may stay silent on a forwarded request (long prompt processing counts).</summary>
    public TimeSpan ActivityTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Longest LM Studio may take to answer the proxy's own calls (its model list, probes); past it the host counts as unavailable.</summary>
    public TimeSpan ApiTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest the proxy waits to open a connection to LM Studio.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>
    /// Most bytes of request bodies held at once, across all models (an inference body is read whole before it is held
    /// or forwarded); a request past it gets a 503 with Retry-After.
    /// </summary>
    public long MaxHeldBodyBytes { get; set; } = 256 * 1024 * 1024;

    /// <summary>
    /// Origins (scheme://host:port) of web pages allowed to send requests that act: inference, loads, operator
    /// actions, WebSocket upgrades. "*": any. Pages served by the proxy itself, and clients that send no Origin, need none.
    /// </summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>
    /// Host names the proxy answers to besides IP addresses, loopback names, the machine's name and the names it listens
    /// on (and, when it listens beyond loopback, names public DNS cannot give). "*.example.lan": subdomains; "*": any.
    /// </summary>
    public List<string> AllowedHosts { get; set; } = [];

    /// <summary>Models loaded in the background at start-up and kept loaded; they are pinned (never unloaded by the proxy).</summary>
    public List<string> Preload { get; set; } = [];

    /// <summary>What a held streaming request receives while it waits: off, comment or chunk.</summary>
    public StreamKeepAliveMode StreamKeepAlive { get; set; } = StreamKeepAliveMode.Off;

    /// <summary>How long a streaming request is held silently before keep-alives start.</summary>
    public TimeSpan KeepAliveAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Inbound API keys; when any are set, every request but /healthz and /readyz must carry one.</summary>
    public List<string> ApiKeys { get; set; } = [];

    /// <summary>Named keys with a role, a model list, a priority and limits (see Keys/). ApiKeys entries join them as inference keys.</summary>
    public Dictionary<string, Keys.KeyOptions> Keys { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>How requests beyond an instance's parallel slots wait in the proxy: fair (by key and priority) or arrival (first come).</summary>
    public Sharing.QueueOrder QueueOrder { get; set; } = Sharing.QueueOrder.Fair;

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

    /// <summary>
    /// The hosts in force: <see cref="Hosts"/>, or <see cref="Upstream"/> as the one host named "default".
    /// Each host's capacity is the shared <see cref="Capacity"/> with its own overrides applied (see ProxySettings.Bind).
    /// </summary>
    public IReadOnlyList<LmStudioHostOptions> EffectiveHosts() => Hosts.Count == 0
        ? [new LmStudioHostOptions { Name = "default", Url = Upstream, ApiKey = UpstreamApiKey, Loader = Loader, Capacity = Capacity }]
        : [.. Hosts.Values.OrderBy(h => h.Name, StringComparer.Ordinal)];
}

internal enum LoaderKind
{
    Auto,
    Lms,
    Rest,
}

internal enum StreamKeepAliveMode
{
    Off,
    Comment,
    Chunk,
}

/// <summary>One LM Studio server behind the proxy (<c>LmsProxy:Hosts:&lt;name&gt;</c>).</summary>
internal sealed class LmStudioHostOptions
{
    /// <summary>The host's name (its key under Hosts); "default" for the single Upstream.</summary>
    public string Name { get; set; } = "default";

    public Uri? Url { get; set; }

    /// <summary>LM Studio API token for this host; sent to this host only.</summary>
    public string? ApiKey { get; set; }

    public LoaderKind Loader { get; set; } = LoaderKind.Auto;

    /// <summary>Overrides of the shared capacity settings; null: the shared ones.</summary>
    public CapacityOptions? Capacity { get; set; }

    /// <summary>Which models this host may serve: keys or globs (<c>qwen/*</c>); empty: every model it has.</summary>
    public List<string> Models { get; set; } = [];
}

/// <summary>How much one LM Studio host may hold, and when the proxy unloads (<c>LmsProxy:Capacity</c>).</summary>
internal sealed class CapacityOptions
{
    /// <summary>Most models loaded at once; 0: no count limit.</summary>
    public int MaxLoadedModels { get; set; }

    /// <summary>Memory the loaded models may use, in bytes; 0: unknown (LM Studio's refusals teach it).</summary>
    public long MemoryBudgetBytes { get; set; }

    /// <summary>Unload a model unused for this long (unless pinned or busy); 00:00:00: never.</summary>
    public TimeSpan IdleUnloadAfter { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Longest a request waits for a busy model to make room before that model stops taking new requests and is
    /// swapped out (and the least a model stays once loaded). Until then the loaded model's requests are served
    /// together. "auto": the load times of the two models involved, between 2 and 30 s. A duration: that bound;
    /// 00:00:00: strict arrival order.
    /// </summary>
    public string MaxSwapWait { get; set; } = "auto";

    /// <summary>The bound <see cref="MaxSwapWait"/> names; null for auto (or a value validation rejects).</summary>
    public TimeSpan? SwapWaitBound =>
        TimeSpan.TryParse(MaxSwapWait, System.Globalization.CultureInfo.InvariantCulture, out var bound) ? bound : null;

    /// <summary>Whether models loaded outside the proxy (in the LM Studio app) may be unloaded to make room.</summary>
    public bool EvictForeign { get; set; }

    /// <summary>Requests in flight at which an instance counts as saturated (spill over to another host); 0: its parallel.</summary>
    public int SpillAt { get; set; }

    public CapacityOptions Clone() => (CapacityOptions)MemberwiseClone();
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
