using System.Diagnostics;

namespace LmsProxy.Simulation;

/// <summary>Runs many seeds; the first that breaks an invariant is reported with its trace (re-run it alone to reproduce it).</summary>
public static class SimulationRun
{
    public sealed record Result(int Seeds, long Events, long InvariantChecks, TimeSpan Elapsed, string? Failure)
    {
        public double EventsPerSecond => Events / Elapsed.TotalSeconds;
    }

    public static Result Seeds(int first, int count)
    {
        var watch = Stopwatch.StartNew();
        long events = 0, checks = 0;
        for (var seed = first; seed < first + count; seed++)
        {
            var world = new World(Workload.Generate(seed));
            try
            {
                world.Run();
            }
            catch (InvariantViolation violation)
            {
                return new Result(seed - first + 1, events + world.Events, checks + world.InvariantChecks, watch.Elapsed, violation.Message);
            }
            events += world.Events;
            checks += world.InvariantChecks;
        }
        return new Result(count, events, checks, watch.Elapsed, null);
    }
}
