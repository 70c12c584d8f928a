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

    /// <summary>The commit, and "+ uncommitted changes" when the work tree differs from it (the figures are then not that commit's).</summary>
    private static string Commit()
    {
        try
        {
            var hash = Git("rev-parse --short HEAD");
            if (hash is null) return "unknown";
            return Git("status --porcelain --untracked-files=no") is { Length: > 0 } ? $"{hash} + uncommitted changes" : hash;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown (no git)";
        }
    }

    private static string? Git(string arguments)
    {
        using var git = Process.Start(new ProcessStartInfo("git", arguments) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory })!;
        var output = git.StandardOutput.ReadToEnd().Trim();
        git.WaitForExit();
        return git.ExitCode == 0 ? output : null;
    }
}
