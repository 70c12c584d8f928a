using System.Diagnostics;

namespace LmsProxy.Tests.Gateway;

/// <summary>A bad setting stops the real program with one line that names it, not a stack trace.</summary>
public sealed class StartupValidationTests
{
    [Theory(Timeout = 30000)]
    [InlineData("--LmsProxy:Upstream=ftp://example", "LmsProxy:Upstream")]
    [InlineData("--LmsProxy:HoldTimeout=-00:00:05", "LmsProxy:HoldTimeout")]
    [InlineData("--LmsProxy:Loader=magic", "magic")]
    [InlineData("--LmsProxy:Models:qwen:Gpu=lots", "Gpu")]
    [InlineData("--LmsProxy:MaxHeldBodyBytes=1048576", "LmsProxy:MaxHeldBodyBytes")]
    [InlineData("--LmsProxy:AllowedOrigins:0=http://tools.example:3000/app", "LmsProxy:AllowedOrigins")]
    [InlineData("--LmsProxy:AllowedHosts:0=http://gpu.example.com", "LmsProxy:AllowedHosts")]
    public async Task InvalidSetting_StopsWithOneLineNamingIt(string argument, string named)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "LmsProxy.dll"), argument, "--urls=http://127.0.0.1:0"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            WorkingDirectory = Path.GetTempPath(),
        };
        using var process = Process.Start(start)!;
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();

        Assert.Equal(2, process.ExitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("LmsProxy cannot start:", line);
        Assert.Contains(named, line);
    }
}
