using System.Diagnostics;
using System.Runtime.InteropServices;
using LmsProxy.Hosting;

namespace LmsProxy.Service;

/// <summary>
/// `lmsproxy service install [--user] [--settings PATH] [--print] [-- ARGS]`, `service uninstall [--user] [--print]`,
/// `service status [--user]`: installs this program, started the way it was started now, as a service of the OS
/// (systemd, launchd, Windows) that runs as the user who runs LM Studio. `--print` writes the file (or, on Windows, the
/// commands) to standard output and what would be done to standard error, and changes nothing.
/// </summary>
internal static partial class ServiceCommand
{
    public const string Usage = """
        Usage: lmsproxy service install [--user] [--settings <file>] [--print] [-- <arguments for the service>]
               lmsproxy service uninstall [--user] [--print]
               lmsproxy service status [--user]
        """;

    public static bool IsRequested(string[] args) => args.Length > 0 && args[0] == "service";

    private sealed record Request(string Verb, bool User, bool Print, string? Settings, string[] Passed);

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (Parse(args, out var problem) is not { } request)
        {
            error.WriteLine(problem);
            error.WriteLine(Usage);
            return 2;
        }
        try
        {
            return request.Verb switch
            {
                "install" => Install(request, output, error),
                "uninstall" => Uninstall(request, output, error),
                _ => Status(request, output, error),
            };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            error.WriteLine($"lmsproxy service {request.Verb}: {ex.Message}");
            return 1;
        }
    }

    private static Request? Parse(string[] args, out string problem)
    {
        problem = "";
        if (args.Length < 2 || args[1] is not ("install" or "uninstall" or "status"))
        {
            problem = "lmsproxy service: say install, uninstall or status.";
            return null;
        }
        bool user = false, print = false;
        string? settings = null;
        var passed = Array.Empty<string>();
        for (var i = 2; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--user": user = true; break;
                case "--print": print = true; break;
                case SettingsFileOption.Name when i + 1 < args.Length && args[1] == "install": settings = args[++i]; break;
                case "--" when args[1] == "install": passed = args[(i + 1)..]; i = args.Length; break;
                default:
                    problem = $"lmsproxy service {args[1]}: unknown argument '{args[i]}'.";
                    return null;
            }
        }
        return new Request(args[1], user, print, settings, passed);
    }

    private static int Install(Request request, TextWriter output, TextWriter error)
    {
        var (userName, home) = request.User || !OperatingSystem.IsLinux() ? (Environment.UserName, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)) : ServiceUser.Current();
        if (OperatingSystem.IsLinux() && !request.User && !request.Print && geteuid() != 0)
        {
            error.WriteLine("lmsproxy service install: a system service is installed by root (sudo, keeping this program's path), or add --user for a service of your own systemd manager.");
            return 1;
        }
        if (ServiceUser.LmStudioWarning(userName, home) is { } warning) error.WriteLine(warning);
        var service = ServiceDefinition.ForThisProgram(request.Settings, request.Passed, userName, home);

        string? file = null, content = null;
        string[][] commands;
        if (OperatingSystem.IsLinux())
        {
            (file, content, commands) = (SystemdUnit.PathFor(request.User, home), SystemdUnit.Render(service, request.User, CommandLineHelp.Version), SystemdUnit.InstallCommands(request.User, userName));
        }
        else if (OperatingSystem.IsMacOS())
        {
            (file, content, commands) = (LaunchdAgent.PathFor(home), LaunchdAgent.Render(service), LaunchdAgent.InstallCommands(getuid(), LaunchdAgent.PathFor(home)));
        }
        else if (OperatingSystem.IsWindows())
        {
            var password = request.Print ? WindowsServiceCommands.PasswordPlaceholder : Environment.GetEnvironmentVariable("LMSPROXY_SERVICE_PASSWORD") ?? ReadPassword(userName, error);
            commands = WindowsServiceCommands.InstallCommands(service, password);
        }
        else
        {
            error.WriteLine("lmsproxy service install: services are installed on Linux (systemd), macOS (launchd) and Windows.");
            return 1;
        }

        if (request.Print)
        {
            if (content is not null) output.Write(content);
            else foreach (var command in commands) output.WriteLine(WindowsServiceCommands.Display(command));
            if (file is not null) error.WriteLine($"would write {file}");
            foreach (var command in commands.Where(_ => file is not null)) error.WriteLine("would run: " + string.Join(' ', command));
            return 0;
        }

        if (request.Settings is { } settings && !File.Exists(settings))
        {
            // A file to edit, listing every setting with its default; it stays where the user chose, across reinstalls.
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(settings))!);
            File.Copy(ContentRoot.SettingsFile(ContentRoot.Find()), settings);
            error.WriteLine($"wrote {Path.GetFullPath(settings)} (a copy of the default settings, to edit; edits apply without a restart)");
        }
        if (file is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            File.WriteAllText(file, content);
            output.WriteLine($"wrote {file}");
        }
        if (OperatingSystem.IsMacOS()) Directory.CreateDirectory(Path.GetDirectoryName(LaunchdAgent.LogPath(home))!);
        var failed = false;
        foreach (var command in commands)
        {
            var optional = command is ["launchctl", "bootout", ..] or ["loginctl", ..];
            var code = Execute(command, output);
            if (code != 0 && !optional) failed = true;
            if (code != 0 && command is ["loginctl", ..]) error.WriteLine("warning: lingering is off: the user service starts when you log in, not with the machine.");
        }
        if (failed) return 1;
        output.WriteLine($"LmsProxy runs as a service of user '{userName}'. `lmsproxy service status{(request.User ? " --user" : "")}` shows it.");
        return 0;
    }

    private static int Uninstall(Request request, TextWriter output, TextWriter error)
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (OperatingSystem.IsLinux() && !request.User) home = ServiceUser.Current().Home;
        var (file, before, after) = OperatingSystem.IsLinux() ? (SystemdUnit.PathFor(request.User, home), SystemdUnit.UninstallCommands(request.User), SystemdUnit.AfterUninstallCommands(request.User))
            : OperatingSystem.IsMacOS() ? (LaunchdAgent.PathFor(home), LaunchdAgent.UninstallCommands(getuid()), [])
            : ((string?)null, WindowsServiceCommands.UninstallCommands(), Array.Empty<string[]>());
        if (request.Print)
        {
            foreach (var command in before) output.WriteLine("would run: " + string.Join(' ', command));
            if (file is not null) output.WriteLine($"would remove {file}");
            foreach (var command in after) output.WriteLine("would run: " + string.Join(' ', command));
            return 0;
        }
        if (file is not null && !File.Exists(file))
        {
            error.WriteLine($"lmsproxy service uninstall: {file} does not exist (nothing installed{(OperatingSystem.IsLinux() && !request.User ? "; a user service: add --user" : "")}).");
            return 1;
        }
        foreach (var command in before) Execute(command, output); // stopping fails harmlessly when it is not running
        if (file is not null)
        {
            File.Delete(file);
            output.WriteLine($"removed {file}");
        }
        var code = 0;
        foreach (var command in after) code |= Execute(command, output);
        return code == 0 ? 0 : 1;
    }

    private static int Status(Request request, TextWriter output, TextWriter error)
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (OperatingSystem.IsLinux())
        {
            // Without --user: the system unit, or the user's when only that one exists.
            var user = request.User || (!File.Exists(SystemdUnit.PathFor(false, home)) && File.Exists(SystemdUnit.PathFor(true, home)));
            var file = SystemdUnit.PathFor(user, home);
            output.WriteLine(File.Exists(file) ? $"installed: {file}" : $"not installed ({file} does not exist)");
            return Execute(SystemdUnit.StatusCommand(user), output);
        }
        if (OperatingSystem.IsMacOS())
        {
            var file = LaunchdAgent.PathFor(home);
            output.WriteLine(File.Exists(file) ? $"installed: {file}; logs: {LaunchdAgent.LogPath(home)}" : $"not installed ({file} does not exist)");
            return Execute(LaunchdAgent.StatusCommand(getuid()), output);
        }
        if (OperatingSystem.IsWindows()) return Execute(WindowsServiceCommands.StatusCommand(), output);
        error.WriteLine("lmsproxy service status: services are installed on Linux (systemd), macOS (launchd) and Windows.");
        return 1;
    }

    /// <summary>Runs a command with this console; its exit code, 127 when it cannot be started.</summary>
    private static int Execute(string[] command, TextWriter output)
    {
        output.WriteLine("> " + string.Join(' ', command.Select(a => a.Contains(' ', StringComparison.Ordinal) ? $"\"{a}\"" : a)));
        output.Flush();
        var start = new ProcessStartInfo(command[0], command[1..]) { UseShellExecute = false };
        try
        {
            using var process = Process.Start(start)!;
            process.WaitForExit();
            return process.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            output.WriteLine($"{command[0]}: {ex.Message}");
            return 127;
        }
    }

    private static string ReadPassword(string userName, TextWriter error)
    {
        error.Write($"The service runs as '{userName}' (the user who runs LM Studio); Windows needs that account's password: ");
        var password = new System.Text.StringBuilder();
        for (var key = Console.ReadKey(intercept: true); key.Key != ConsoleKey.Enter; key = Console.ReadKey(intercept: true))
        {
            if (key.Key == ConsoleKey.Backspace) { if (password.Length > 0) password.Length--; }
            else password.Append(key.KeyChar);
        }
        error.WriteLine();
        return password.ToString();
    }

    [LibraryImport("libc")]
    private static partial uint geteuid();

    [LibraryImport("libc")]
    private static partial uint getuid();
}
