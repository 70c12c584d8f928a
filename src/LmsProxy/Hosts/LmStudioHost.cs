using LmsProxy.Configuration;
using LmsProxy.Loading;
using LmsProxy.Models;
using LmsProxy.Scheduling;
using Yarp.ReverseProxy.Model;

namespace LmsProxy.Hosts;

/// <summary>
/// One LM Studio server behind the proxy: where it is, how to load on it, whether YARP's health checks see it alive,
/// and what it holds. The model state (catalog, instances, learned limits) is owned by the <see cref="Scheduler"/>
/// and changed only under its lock; the warm path reads <see cref="IsHealthy"/> and nothing else.
/// </summary>
internal sealed class LmStudioHost
{
    private readonly Func<string, DestinationState?> _findDestination;
    private DestinationState? _destination;
    private string[] _allowed;

    public LmStudioHost(LmStudioHostOptions options, LmStudioApi api, LoaderChoice loader, Func<string, DestinationState?> findDestination)
    {
        Options = options;
        Api = api;
        Loader = loader;
        _findDestination = findDestination;
        _allowed = AllowList(options.Models);
        Limits = LimitsOf(options.Capacity!);
        Prefix = options.Url!.GetLeftPart(UriPartial.Authority);
    }

    public string Name => Options.Name;

    public Uri Url => Options.Url!;

    /// <summary>The URL without a trailing slash, as YARP's forwarder wants its destination prefix.</summary>
    public string Prefix { get; }

    public LmStudioHostOptions Options { get; private set; }

    public CapacityOptions Capacity => Options.Capacity!;

    /// <summary>The placement policy's settings for this host: immutable, made once per settings change.</summary>
    public Scheduling.Policy.HostLimits Limits { get; private set; }

    public LmStudioApi Api { get; }

    public LoaderChoice Loader { get; }

    /// <summary>Taken out of the cluster by a settings edit: nothing new is placed on it.</summary>
    public bool Removed { get; internal set; }

    /// <summary>
    /// YARP's view of this destination: alive unless an active probe of /lmstudio-greeting or a failed forward said
    /// otherwise (unknown counts as alive, as YARP's HealthyAndUnknown policy does).
    /// </summary>
    public bool IsHealthy
    {
        get
        {
            var destination = _destination ??= _findDestination(Name);
            if (destination is null) return !Removed;
            var health = destination.Health;
            return !Removed && health.Active != DestinationHealth.Unhealthy && health.Passive != DestinationHealth.Unhealthy;
        }
    }

    internal DestinationState? Destination => _destination ??= _findDestination(Name);

    public bool Allows(string modelKey) => _allowed.Length == 0 || _allowed.Any(pattern => ModelName.Matches(pattern, modelKey));

    /// <summary>A settings edit that keeps the host's address, token and loader changes only these.</summary>
    internal void Update(LmStudioHostOptions options)
    {
        Options = options;
        _allowed = AllowList(options.Models);
        Limits = LimitsOf(options.Capacity!);
    }

    private static Scheduling.Policy.HostLimits LimitsOf(CapacityOptions c) =>
        new(c.MaxLoadedModels, c.IdleUnloadAfter, c.SwapWaitBound, c.EvictForeign, c.SpillAt);

    internal bool SameEndpoint(LmStudioHostOptions other) =>
        Url == other.Url && Options.ApiKey == other.ApiKey && Options.Loader == other.Loader;

    // State below is the scheduler's, read and written under its lock.

    /// <summary>What the host has downloaded and loaded, as last read from it.</summary>
    internal ModelCatalog Catalog { get; set; } = ModelCatalog.Empty;

    internal DateTimeOffset? RefreshedAt { get; set; }

    internal string? LastRefreshError { get; set; }

    /// <summary>LM Studio refuses the proxy's own calls (auth on, no token): requests are forwarded unchecked.</summary>
    internal bool Unverified { get; set; }

    /// <summary>Loaded (or loading, or unloading) models, by key.</summary>
    internal Dictionary<string, HostedModel> Instances { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Bumped on every change of <see cref="Instances"/>; a catalog read that saw an older version is not applied.</summary>
    internal long Version { get; set; }

    /// <summary>The load or unload running on this host (one at a time: LM Studio duplicates or evicts when they overlap).</summary>
    internal string? Operation { get; set; }

    /// <summary>The most LM Studio was seen to hold; lowered by each refusal, raised by each load that fits above it. 0: unknown.</summary>
    internal long LearnedCeilingBytes { get; set; }

    /// <summary>
    /// Models LM Studio refused even with nothing else loaded, with the timestamp until which that verdict stands (it
    /// is asked again after that, and at once after a settings edit: memory may have been freed, a context shortened).
    /// </summary>
    internal Dictionary<string, long> TooLarge { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The model-list read under way, which every caller that needs one joins (single flight per host).</summary>
    internal Task<CatalogRead>? CatalogRead { get; set; }

    private static string[] AllowList(List<string> patterns) => [.. patterns.Select(p => p.Trim())];
}

/// <summary>One read of a host's model list: what it said (null when it could not be read), and when the read began.</summary>
internal sealed record CatalogRead(ModelCatalog? Catalog, long StartedAt, string? Error = null);
