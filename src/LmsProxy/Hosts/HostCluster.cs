using LmsProxy.Configuration;
using LmsProxy.Loading;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace LmsProxy.Hosts;

/// <summary>
/// The LM Studio hosts behind the proxy, as one YARP cluster: one destination per host, YARP's active health check
/// probing /lmstudio-greeting, and passive health set when a forward cannot reach a host. Placement is the
/// scheduler's (YARP's load balancing cannot await a load); liveness is YARP's. Kept in step with the settings.
/// </summary>
internal sealed partial class HostCluster
{
    public const string ClusterId = "lmstudio";

    private readonly ProxySettings _settings;
    private readonly HttpClient _apiClient;
    private readonly InMemoryConfigProvider _yarpConfig;
    private readonly IServiceProvider _services;
    private readonly ILogger<HostCluster> _logger;
    private readonly Lock _lock = new();
    private volatile IReadOnlyList<LmStudioHost> _hosts = [];

    public HostCluster(ProxySettings settings, InMemoryConfigProvider yarpConfig, IServiceProvider services, ILogger<HostCluster> logger)
    {
        _settings = settings;
        // The proxy's own calls (model lists, loads, unloads): one pool for all hosts, separate from forwarded traffic.
        _apiClient = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            ConnectTimeout = settings.Current.Forwarding.ConnectTimeout,
            AutomaticDecompression = System.Net.DecompressionMethods.All,
        }) { Timeout = Timeout.InfiniteTimeSpan };
        _yarpConfig = yarpConfig;
        _services = services;
        _logger = logger;
        Apply(settings.Current);
        settings.Changed += Apply;
    }

    /// <summary>The hosts in force, in name order.</summary>
    public IReadOnlyList<LmStudioHost> Hosts => _hosts;

    /// <summary>Raised after hosts were added, removed or changed.</summary>
    public event Action? Changed;

    /// <summary>YARP's configuration for the cluster: what the proxy's config provider starts with.</summary>
    public static ClusterConfig ClusterFor(LmsProxyOptions options) => new()
    {
        ClusterId = ClusterId,
        Destinations = options.EffectiveHosts().ToDictionary(h => h.Name, h => new DestinationConfig { Address = h.Url!.AbsoluteUri }),
        HealthCheck = new HealthCheckConfig
        {
            AvailableDestinationsPolicy = HealthCheckConstants.AvailableDestinations.HealthyAndUnknown,
            // LM Studio answers 200 to paths it does not know: the probe's body is checked too (GreetingCheckHandler).
            Active = new ActiveHealthCheckConfig
            {
                Enabled = true,
                Interval = options.Loading.HealthCheckInterval,
                Timeout = TimeSpan.FromSeconds(Math.Min(2, options.Loading.HealthCheckInterval.TotalSeconds)),
                Policy = HealthCheckConstants.ActivePolicy.ConsecutiveFailures,
                Path = GreetingCheckHandler.Path,
            },
        },
        Metadata = new Dictionary<string, string> { [ConsecutiveFailuresHealthPolicyOptions.ThresholdMetadataName] = "2" },
    };

    /// <summary>
    /// A forward could not reach the host: take it out of placement now (YARP passive health), rather than waiting
    /// for the active probe. It comes back after the reactivation period, once the probe agrees.
    /// </summary>
    public void ReportUnreachable(LmStudioHost host)
    {
        // With one host there is nowhere else to go: marking it down would only delay its comeback.
        if (_hosts.Count < 2) return;
        if (host.Destination is not { } destination || !_services.GetRequiredService<IProxyStateLookup>().TryGetCluster(ClusterId, out var cluster)) return;
        if (destination.Health.Passive == DestinationHealth.Unhealthy) return;
        var reactivation = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, _settings.Current.Loading.HealthCheckInterval.Ticks * 2));
        _services.GetRequiredService<IDestinationHealthUpdater>().SetPassive(cluster, destination, DestinationHealth.Unhealthy, reactivation);
        LogUnreachable(_logger, host.Name, host.Url, reactivation.TotalSeconds);
    }

    private void Apply(LmsProxyOptions options)
    {
        lock (_lock)
        {
            var current = _hosts.ToDictionary(h => h.Name, StringComparer.OrdinalIgnoreCase);
            var next = new List<LmStudioHost>();
            foreach (var wanted in options.EffectiveHosts())
            {
                if (current.Remove(wanted.Name, out var existing) && existing.SameEndpoint(wanted))
                {
                    existing.Update(wanted);
                    next.Add(existing);
                    continue;
                }
                if (existing is not null) existing.Removed = true;
                var api = new LmStudioApi(_apiClient, wanted.Url!, wanted.ApiKey, wanted.Name, () => _settings.Current.Loading.ApiTimeout);
                next.Add(new LmStudioHost(wanted, api, LoaderSelector.Choose(wanted, api, _settings, _logger), FindDestination));
            }
            foreach (var gone in current.Values) gone.Removed = true;
            var changed = _hosts.Count != next.Count || _hosts.Zip(next).Any(p => !ReferenceEquals(p.First, p.Second));
            _hosts = next;
            _yarpConfig.Update([], [ClusterFor(options)]);
            if (changed && _hosts.Count > 0) LogHosts(_logger, string.Join(", ", next.Select(h => $"{h.Name}={h.Url} ({h.Loader.Name})")));
        }
        Changed?.Invoke();
    }

    private DestinationState? FindDestination(string name) =>
        _services.GetRequiredService<IProxyStateLookup>().TryGetCluster(ClusterId, out var cluster) &&
        cluster.Destinations.TryGetValue(name, out var destination) ? destination : null;

    [LoggerMessage(EventId = 50, Level = LogLevel.Information, Message = "LM Studio hosts: {Hosts}")]
    private static partial void LogHosts(ILogger logger, string hosts);

    [LoggerMessage(EventId = 51, Level = LogLevel.Warning, Message = "LM Studio host {Host} ({Url}) cannot be reached: out of placement for at least {Seconds:0} s")]
    private static partial void LogUnreachable(ILogger logger, string host, Uri url, double seconds);
}
