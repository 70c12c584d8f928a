namespace LmsProxy.Tests.Infrastructure;

/// <summary>
/// Meters are heard process-wide by name, so two proxies in one test process would count each other's requests.
/// Tests that read /metrics run alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    public const string Name = "metrics";
}
