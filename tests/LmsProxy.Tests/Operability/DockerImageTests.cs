using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;

using LmsProxy.Tests.Infrastructure;

namespace LmsProxy.Tests.Operability;

/// <summary>
/// No Docker engine here, so the image's build stage is replayed: its COPY steps copy from the repository
/// (minus .dockerignore) into an empty folder, its RUN steps run there, and the published output is started
/// with the runtime stage's environment and must answer /healthz and its own --healthcheck.
/// </summary>
public sealed class DockerImageTests
{
    private static readonly string Root = FindRoot();

    [Fact(Timeout = 300000)]
    public async Task BuildStage_ReplayedFromTheDockerfile_PublishesAProgramThatServes()
    {
        var lines = File.ReadAllLines(Path.Combine(Root, "docker", "Dockerfile")).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        var runtimeStage = lines.FindIndex(1, l => l.StartsWith("FROM ", StringComparison.Ordinal));
        var context = Directory.CreateTempSubdirectory("lmsproxy-docker-");
        var output = Path.Combine(context.FullName, "app-out");
        try
        {
            foreach (var line in lines.Take(runtimeStage))
            {
                if (line.StartsWith("COPY ", StringComparison.Ordinal)) Copy(line, context.FullName);
                if (line.StartsWith("RUN ", StringComparison.Ordinal)) await Run(line[4..].Replace(" /app", " " + output, StringComparison.Ordinal), context.FullName);
            }
            Assert.True(File.Exists(Path.Combine(output, "LmsProxy.dll")), "publish produced no LmsProxy.dll");
            Assert.True(File.Exists(Path.Combine(output, "appsettings.json")), "the top-level appsettings.json is not in the published output");
            Assert.Contains(lines.Skip(runtimeStage), l => l == "COPY --from=build /app .");
            Assert.Contains(lines.Skip(runtimeStage), l => l.StartsWith("USER ", StringComparison.Ordinal));
            Assert.Contains(lines.Skip(runtimeStage), l => l.Contains("ASPNETCORE_HTTP_PORTS=8080", StringComparison.Ordinal));
            Assert.Contains(lines.Skip(runtimeStage), l => l.Contains("LmsProxy__State__Path=/data/lmsproxy.db", StringComparison.Ordinal));
            Assert.Contains(lines.Skip(runtimeStage), l => l == "VOLUME /data");

            await StartAndProbe(output);
        }
        finally
        {
            context.Delete(recursive: true);
        }
    }

    private static void Copy(string line, string context)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..];
        Assert.DoesNotContain(parts, p => p.StartsWith("--", StringComparison.Ordinal));
        var destination = Path.Combine(context, parts[^1]);
        foreach (var source in parts[..^1])
        {
            var from = Path.Combine(Root, source.TrimEnd('/'));
            Assert.True(File.Exists(from) || Directory.Exists(from), $"Dockerfile copies '{source}', which does not exist");
            if (File.Exists(from))
            {
                var target = parts[^1].EndsWith('/') || parts.Length > 2 ? Path.Combine(destination, Path.GetFileName(from)) : destination;
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(from, target, overwrite: true);
            }
            else
            {
                CopyDirectory(from, destination);
            }
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(from, file);
            // .dockerignore: **/bin/, **/obj/
            if (relative.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj")) continue;
            var target = Path.Combine(to, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }

    private static async Task Run(string command, string workingDirectory)
    {
        var start = new ProcessStartInfo("bash", ["-c", command]) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["TARGETARCH"] = RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "arm64" : "x64";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"`{command}` failed: {await stdout} {await stderr}");
    }

    private static async Task StartAndProbe(string output)
    {
        var port = Eventually.UnusedPort();
        var start = new ProcessStartInfo("dotnet", [Path.Combine(output, "LmsProxy.dll")]) { WorkingDirectory = output, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["ASPNETCORE_HTTP_PORTS"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}"; // loopback here; the image listens on all interfaces
        start.Environment["LmsProxy__Upstream"] = $"http://127.0.0.1:{Eventually.UnusedPort()}";
        start.Environment["LmsProxy__State__Path"] = Path.Combine(output, "data", "lmsproxy.db"); // the image's /data volume, here
        using var process = Process.Start(start)!;
        _ = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        try
        {
            using var http = new HttpClient();
            HttpStatusCode? status = null;
            for (var i = 0; i < 100 && status is null; i++)
            {
                try { status = (await http.GetAsync($"http://127.0.0.1:{port}/healthz")).StatusCode; }
                catch (HttpRequestException) { await Task.Delay(100); }
            }
            Assert.Equal(HttpStatusCode.OK, status);

            var probe = new ProcessStartInfo("dotnet", [Path.Combine(output, "LmsProxy.dll"), "--healthcheck"]) { WorkingDirectory = output };
            probe.Environment["ASPNETCORE_HTTP_PORTS"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            using var check = Process.Start(probe)!;
            await check.WaitForExitAsync();
            Assert.Equal(0, check.ExitCode);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
        }
    }
    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "LmsProxy.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("repository root not found");
    }
}
