using System.Runtime.InteropServices;
using LmsProxy.Hosting;

namespace LmsProxy.Service;

/// <summary>
/// What a service starts and as whom, the same for systemd, launchd and Windows: this very program (as it was started
/// now: the native binary, the tool's command, or `dotnet LmsProxy.dll`), its settings file, and the OS user whose home
/// holds LM Studio (lms finds its server and key there, so the proxy must run as that user).
/// </summary>
internal sealed record ServiceDefinition(
    string Executable,
    IReadOnlyList<string> Arguments,
    string WorkingDirectory,
    IReadOnlyList<KeyValuePair<string, string>> Environment,
    string UserName,
    string UserHome)
{
    public const string Name = "lmsproxy";
    public const string Description = "LmsProxy: loads the model a request names, then forwards it to LM Studio";

    /// <summary>The executable followed by its arguments.</summary>
    public IEnumerable<string> CommandLine => [Executable, .. Arguments];

    /// <summary>This program as it runs now, for <paramref name="userName"/> (null: the user running this).</summary>
    public static ServiceDefinition ForThisProgram(string? settingsFile, IReadOnlyList<string> extraArguments, string userName, string userHome)
    {
        var processPath = System.Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is unknown");
        var arguments = new List<string>();
        // Started as `dotnet LmsProxy.dll`: the service starts it the same way (the dll's own path, not the working directory's).
        var startedByDotnet = Path.GetFileNameWithoutExtension(processPath).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        if (startedByDotnet)
        {
            arguments.Add(Path.Combine(AppContext.BaseDirectory, "LmsProxy.dll"));
        }
        if (settingsFile is not null) arguments.AddRange([SettingsFileOption.Name, Path.GetFullPath(settingsFile)]);
        arguments.AddRange(extraArguments);

        // The JIT runtime's low-memory settings (a native build carries its own in the binary and reads neither).
        var environment = System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported ? new List<KeyValuePair<string, string>>(LowMemoryRuntime.Settings) : [];
        // A framework-dependent program (the tool, dotnet LmsProxy.dll) needs to find its runtime from a service's bare
        // environment: the runtime it runs on now. A native or self-contained build carries its own.
        if (SharedRuntimeRoot() is { } dotnetRoot) environment.Add(new("DOTNET_ROOT", dotnetRoot));
        // The folder of the file started: the dll's for `dotnet LmsProxy.dll`, else the executable's. For a tool that is its
        // command folder (~/.dotnet/tools), not its versioned .store folder, which an update removes (and systemd would
        // then fail to start it); the tool finds its settings file from anywhere (see ContentRoot).
        var executable = startedByDotnet ? processPath : ToolCommandFor(processPath);
        var workingDirectory = startedByDotnet ? AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar) : Path.GetDirectoryName(executable)!;
        return new ServiceDefinition(executable, arguments, workingDirectory, environment, userName, userHome);
    }

    /// <summary>
    /// The native tool's command (~/.dotnet/tools/lmsproxy) is a link to the executable in the tool's versioned .store
    /// folder, and the running program only knows the link's target, which an update removes. The service starts the
    /// link instead, which an update points at the new version. Anything else (the JIT tool's command is a launcher
    /// in the command folder itself) is started as it is.
    /// </summary>
    internal static string ToolCommandFor(string executable)
    {
        if (!ContentRoot.IsInstalledTool(Path.GetDirectoryName(executable)!)) return executable;
        for (var dir = Directory.GetParent(executable); dir?.Parent is not null; dir = dir.Parent)
        {
            if (dir.Name != ".store") continue;
            var command = Path.Combine(dir.Parent.FullName, ToolCommand);
            return File.Exists(command) && File.ResolveLinkTarget(command, returnFinalTarget: true)?.FullName == executable ? command : executable;
        }
        return executable;
    }

    /// <summary>ToolCommandName in LmsProxy.csproj.</summary>
    private const string ToolCommand = "lmsproxy";

    /// <summary>The dotnet folder of the shared runtime this program runs on; null when it carries its own.</summary>
    private static string? SharedRuntimeRoot()
    {
        var runtimeDirectory = RuntimeEnvironment.GetRuntimeDirectory().TrimEnd(Path.DirectorySeparatorChar);
        // <root>/shared/Microsoft.NETCore.App/<version>
        var framework = Directory.GetParent(runtimeDirectory);
        return framework?.Name == "Microsoft.NETCore.App" && framework.Parent?.Name == "shared" ? framework.Parent.Parent?.FullName : null;
    }
}
