using System.Diagnostics;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>Runs the fake lms as a test would run the real one: its exit code and both streams.</summary>
public static class LmsProcess
{
    public sealed record Run(int ExitCode, string Stdout, string Stderr);

    /// <param name="stdinOpen">Keep stdin open and never write to it (as a caller that forgot to close it); else it is at end of file.</param>
    public static async Task<Run> RunAsync(FakeLms lms, string[] args, bool stdinOpen = false, TimeSpan? limit = null, IDictionary<string, string>? env = null)
    {
        var start = new ProcessStartInfo(lms.Path) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var (key, value) in env ?? new Dictionary<string, string>()) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        if (!stdinOpen) process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(limit ?? TimeSpan.FromSeconds(15));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"lms {string.Join(' ', args)} did not exit within {(limit ?? TimeSpan.FromSeconds(15)).TotalSeconds} s");
        }
        return new Run(process.ExitCode, await stdout, await stderr);
    }

    public static Task<Run> RunAsync(FakeLms lms, params string[] args) => RunAsync(lms, args, stdinOpen: false);
}
