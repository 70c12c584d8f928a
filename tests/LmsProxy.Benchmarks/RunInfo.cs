using System.Diagnostics;
using System.Reflection;
using System.Runtime;

namespace LmsProxy.Benchmarks;

/// <summary>What a run ran on, printed first, so that anyone can tell whether two sets of figures are comparable.</summary>
internal static class RunInfo
{
    public static void Print()
    {
        var configuration = typeof(RunInfo).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "?";
        var dotnetEnv = Environment.GetEnvironmentVariables().Keys.Cast<string>().Where(k => k.StartsWith("DOTNET_", StringComparison.Ordinal)).Order()
            .Select(k => $"{k}={Environment.GetEnvironmentVariable(k)}");
        Console.WriteLine($"Ran on: {CpuModel()}, {Environment.ProcessorCount} cores; .NET {Environment.Version}; {configuration} build; commit {Commit()}; " +
                          $"GC {(GCSettings.IsServerGC ? "server" : "workstation")}; environment: {(dotnetEnv.Any() ? string.Join(" ", dotnetEnv) : "none")}");
    }

    private static string CpuModel()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException)
        {
            return "unknown CPU";
        }
    }

    private static string Commit()
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse --short HEAD") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory })!;
            var hash = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 && hash.Length > 0 ? hash : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown (no git)";
        }
    }
}
