using System.Globalization;

namespace LmStudioSimulator;

/// <summary>
/// Runs the simulator: dotnet run --project tests/LmStudioSimulator -- [--port 1234] [--load-time-ms 2000] [--jit]
/// [--not-loaded-status 400|404] [--idle-ttl-s N] [--token-delay-ms N] [--stream-events N] [--memory-budget-gb N]
/// [--response-delay-ms N] [--parallel N] [--require-token sk-lm-xxxxxxxx:xxxxxxxxxxxxxxxxxxxx] [--bionic] [--auto-fit-context N]
/// [--hide-variant-instances] [--lms-unknown-flag --local]
/// </summary>
public static class SimulatorProgram
{
    public static async Task<int> Main(string[] args)
    {
        var options = new SimulatorOptions { LoadTime = TimeSpan.FromSeconds(2), TokenDelay = TimeSpan.FromMilliseconds(50) };
        var port = 1234;
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt() => int.Parse(Next(), CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--port": port = NextInt(); break;
                case "--load-time-ms": options.LoadTime = TimeSpan.FromMilliseconds(NextInt()); break;
                case "--jit": options.Jit = true; break;
                case "--not-loaded-status": options.NotLoadedStatus = NextInt(); break;
                case "--idle-ttl-s": options.IdleTtl = TimeSpan.FromSeconds(NextInt()); break;
                case "--token-delay-ms": options.TokenDelay = TimeSpan.FromMilliseconds(NextInt()); break;
                case "--stream-events": options.StreamEvents = NextInt(); break;
                case "--memory-budget-gb": options.MemoryBudgetBytes = (long)(double.Parse(Next(), CultureInfo.InvariantCulture) * 1e9); break;
                case "--response-delay-ms": options.ResponseDelay = TimeSpan.FromMilliseconds(NextInt()); break;
                case "--parallel": options.Parallel = NextInt(); break;
                case "--require-token": options.RequireApiToken = Next(); break;
                case "--bionic": options.Bionic = true; break;
                case "--auto-fit-context": options.AutoFitContextLength = NextInt(); break;
                case "--hide-variant-instances": options.HideVariantInstancesFromV1 = true; break;
                case "--lms-unknown-flag": options.LmsUnknownFlags.Add(Next()); break;
                default:
                    Console.Error.WriteLine($"Unknown option {args[i]}. See the comment in Program.cs for the options.");
                    return 2;
            }
        }
        await using var sim = await SimulatorApp.StartAsync(options, $"http://127.0.0.1:{port}");
        var lms = Path.Combine(AppContext.BaseDirectory, "fake-lms", "lms");
        var budget = options.MemoryBudgetBytes is { } bytes ? $"{bytes / 1e9:0.##} GB" : "unlimited";
        Console.WriteLine($"LM Studio simulator on {sim.Url} (JIT {(options.Jit ? "on" : "off")}, load time {options.LoadTime.TotalMilliseconds} ms, memory {budget}, parallel {options.Parallel})");
        Console.WriteLine($"Models: {string.Join(", ", options.Models.Select(m => m.Key))}");
        Console.WriteLine($"Matching fake lms: SIM_URL={sim.Url.AbsoluteUri.TrimEnd('/')} {lms}");
        await sim.WaitForShutdownAsync(); // Ctrl+C or SIGTERM
        return 0;
    }
}
