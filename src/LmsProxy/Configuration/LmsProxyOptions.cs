namespace LmsProxy.Configuration;

/// <summary>
/// The <c>LmsProxy</c> configuration section, by concern: where LM Studio is (here), how models are loaded
/// (<see cref="Loading"/>), how requests are held while they wait (<see cref="Holding"/>), how they are forwarded
/// (<see cref="Forwarding"/>) and who may use the proxy (<see cref="Access"/>). The keys stay flat
/// (<c>LmsProxy:HoldTimeout</c>, not <c>LmsProxy:Holding:HoldTimeout</c>): each part is bound from the section itself
/// (ProxySettings.Bind). Every default here is also written out in appsettings.json. A bound instance is never
/// changed: a settings change binds a new one.
/// </summary>
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

    public LoadingOptions Loading { get; } = new();

    public HoldingOptions Holding { get; } = new();

    public ForwardingOptions Forwarding { get; } = new();

    public AccessOptions Access { get; } = new();

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
