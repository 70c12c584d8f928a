using System.Diagnostics;
using System.Runtime.InteropServices;

namespace LmsProxy.Tests.Operability;

/// <summary>
/// `dotnet pack src/LmsProxy` makes a .NET tool: packed here into a temporary folder (with its own build output, so
/// the repository's bin/ and obj/ stay untouched while other tests run), installed with --tool-path from that folder
/// alone, and run as `lmsproxy` from a directory holding an unrelated appsettings.json, which it must not read.
/// </summary>
public sealed class ToolPackageTests
{
    private static readonly string Root = FindRoot();

    [Fact(Timeout = 180000)]
    public async Task Pack_InstallWithToolPath_CommandPrintsHelpAndRejectsInvalidSettings()
    {
        var temp = Directory.CreateTempSubdirectory("lmsproxy-tool-");
        try
        {
            var packages = Path.Combine(temp.FullName, "packages");
            var tools = Path.Combine(temp.FullName, "tools");
            // A fresh version each run: nothing cached from an earlier pack of the same version can be installed instead.
            var suffix = $"test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
            await Dotnet(temp.FullName, "pack", Path.Combine(Root, "src", "LmsProxy"), "-o", packages,
                "--artifacts-path", Path.Combine(temp.FullName, "artifacts"), "--version-suffix", suffix);
            var package = Assert.Single(Directory.GetFiles(packages, "LmsProxy.*.nupkg"));
            var version = Path.GetFileNameWithoutExtension(package)["LmsProxy.".Length..];
            Assert.EndsWith(suffix, version, StringComparison.Ordinal);

            // Only the folder just packed into as a source: no network, and no other package named LmsProxy.
            var config = Path.Combine(temp.FullName, "nuget.config");
            File.WriteAllText(config, "<configuration><packageSources><clear /></packageSources></configuration>");
            await Dotnet(temp.FullName, "tool", "install", "LmsProxy", "--tool-path", tools, "--add-source", packages,
                "--configfile", config, "--version", version);

            var dll = Assert.Single(Directory.GetFiles(Path.Combine(tools, ".store"), "LmsProxy.dll", SearchOption.AllDirectories));
            var settings = Path.Combine(Path.GetDirectoryName(dll)!, "appsettings.json");
            Assert.True(File.Exists(settings), "the tool package has no appsettings.json next to LmsProxy.dll");
            Assert.Equal(File.ReadAllText(Path.Combine(Root, "appsettings.json")), File.ReadAllText(settings));

            // Where the user happens to be: an appsettings.json of some other program, with a value the proxy rejects.
            var elsewhere = Directory.CreateDirectory(Path.Combine(temp.FullName, "elsewhere")).FullName;
            File.WriteAllText(Path.Combine(elsewhere, "appsettings.json"), """{ "LmsProxy": { "Upstream": "not a url" } }""");
            var command = Path.Combine(tools, "lmsproxy");

            var help = await Run(command, elsewhere, ["--help"]);
            Assert.Equal(0, help.ExitCode);
            Assert.Contains("LmsProxy:Upstream", help.Stdout, StringComparison.Ordinal);
            Assert.Contains("Settings file: " + settings, help.Stdout, StringComparison.Ordinal);
            Assert.Equal(help.Stdout, (await Run(command, elsewhere, ["-h"])).Stdout);

            var shown = await Run(command, elsewhere, ["--version"]);
            Assert.Equal((0, version), (shown.ExitCode, shown.Stdout.Trim()));

            var invalid = await Run(command, elsewhere, ["--LmsProxy:HoldTimeout=-1"]);
            Assert.Equal(2, invalid.ExitCode);
            var line = Assert.Single(invalid.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            Assert.Contains("LmsProxy:HoldTimeout", line, StringComparison.Ordinal);
            Assert.DoesNotContain("Upstream", line, StringComparison.Ordinal); // the working directory's file was not read

            var fromEnvironment = await Run(command, elsewhere, [], ("LmsProxy__Capacity__MaxLoadedModels", "-1"));
            Assert.Equal(2, fromEnvironment.ExitCode);
            Assert.Contains("LmsProxy:Capacity:MaxLoadedModels", fromEnvironment.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    [Fact]
    public void ContentRoot_InstalledTool_IsItsOwnFolderWhateverTheWorkingDirectory()
    {
        var temp = Directory.CreateTempSubdirectory("lmsproxy-root-");
        try
        {
            var program = Directory.CreateDirectory(Path.Combine(temp.FullName, "program")).FullName;
            var elsewhere = Directory.CreateDirectory(Path.Combine(temp.FullName, "elsewhere")).FullName;
            File.WriteAllText(Path.Combine(elsewhere, "appsettings.json"), "{}");

            // Not a tool (published output, Docker): the working directory's file, as before.
            Assert.Equal(elsewhere, LmsProxy.Hosting.ContentRoot.Find(program, elsewhere));

            // A tool's folder holds DotnetToolSettings.xml: its own folder, even from the repository itself.
            File.WriteAllText(Path.Combine(program, "DotnetToolSettings.xml"), "<DotNetCliTool />");
            Assert.Equal(program, LmsProxy.Hosting.ContentRoot.Find(program, elsewhere));
            Assert.Equal(program, LmsProxy.Hosting.ContentRoot.Find(program, Root));
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    private static async Task Dotnet(string workingDirectory, params string[] args)
    {
        var result = await Run("dotnet", workingDirectory, args);
        Assert.True(result.ExitCode == 0, $"`dotnet {string.Join(' ', args)}` failed ({result.ExitCode}): {result.Stdout} {result.Stderr}");
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> Run(
        string fileName, string workingDirectory, string[] args, params (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(fileName, args) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        // Not the user's state store: these runs keep their state in memory.
        start.Environment["LmsProxy__State__Path"] = "";
        // The tool's launcher looks for the runtime in DOTNET_ROOT: the one running these tests.
        if (!start.Environment.ContainsKey("DOTNET_ROOT"))
        {
            start.Environment["DOTNET_ROOT"] = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        }
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"`{fileName} {string.Join(' ', args)}` did not finish within 120 s");
        }
        return (process.ExitCode, await stdout, await stderr);
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
