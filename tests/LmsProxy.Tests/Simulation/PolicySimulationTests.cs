using LmsProxy.Simulation;

namespace LmsProxy.Tests.Simulation;

/// <summary>
/// The placement policy under a thousand generated workloads in virtual time, invariants checked after every event.
/// A failure names its seed and prints the last events; LMSPROXY_SIM_SEED=N runs that one seed alone to reproduce it.
/// The benchmark command runs 100,000 (dotnet run -c Release --project tests/LmsProxy.Benchmarks -- --simulate 100000).
/// </summary>
public sealed class PolicySimulationTests
{
    [Fact(Timeout = 120000)]
    public async Task AThousandSeededWorkloads_KeepEveryInvariant()
    {
        var result = await Task.Run(() => Environment.GetEnvironmentVariable("LMSPROXY_SIM_SEED") is { } seed
            ? SimulationRun.Seeds(int.Parse(seed, System.Globalization.CultureInfo.InvariantCulture), 1)
            : SimulationRun.Seeds(1, 1000));

        Assert.True(result.Failure is null, result.Failure);
        Assert.True(result.Events > result.Seeds * 50, $"{result.Events} events in {result.Seeds} seeds: the workloads do too little");
    }
}
