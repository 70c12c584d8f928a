using System.Text;

namespace LmsProxy.Service;

/// <summary>
/// The systemd unit: Type=notify (the program tells systemd it is ready once it listens, through
/// Microsoft.Extensions.Hosting.Systemd), restarted on failure but not on invalid settings (exit code 2: a restart
/// cannot fix them), with the low-memory runtime settings. A system unit names its user; a user unit runs in the
/// user's own manager.
/// </summary>
internal static class SystemdUnit
{
    public static string FileName => ServiceDefinition.Name + ".service";

    /// <summary>Where the unit goes: /etc/systemd/system, or the user's ~/.config/systemd/user.</summary>
    public static string PathFor(bool userUnit, string userHome) => userUnit
        ? Path.Combine(Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } config ? config : Path.Combine(userHome, ".config"), "systemd", "user", FileName)
        : Path.Combine("/etc/systemd/system", FileName);

    public static string Render(ServiceDefinition service, bool userUnit, string version)
    {
        var unit = new StringBuilder();
        unit.Append("# Written by `lmsproxy service install` (LmsProxy ").Append(version).Append("); `lmsproxy service uninstall` removes it.\n");
        unit.Append("# It runs as the user who runs LM Studio: lms finds LM Studio's server and key in that user's home.\n");
        unit.Append("[Unit]\n");
        unit.Append("Description=").Append(ServiceDefinition.Description).Append('\n');
        if (!userUnit)
        {
            unit.Append("Wants=network-online.target\n");
            unit.Append("After=network-online.target\n");
        }
        unit.Append("\n[Service]\n");
        unit.Append("Type=notify\n");
        unit.Append("ExecStart=").Append(string.Join(' ', service.CommandLine.Select(a => Quote(a).Replace("$", "$$", StringComparison.Ordinal)))).Append('\n');
        unit.Append("WorkingDirectory=").Append(service.WorkingDirectory.Replace("%", "%%", StringComparison.Ordinal)).Append('\n');
        if (!userUnit) unit.Append("User=").Append(service.UserName).Append('\n');
        foreach (var (name, value) in service.Environment) unit.Append("Environment=").Append(Quote($"{name}={value}")).Append('\n');
        unit.Append("Restart=on-failure\n");
        unit.Append("RestartSec=5\n");
        unit.Append("RestartPreventExitStatus=2\n");
        unit.Append("TimeoutStopSec=30\n");
        unit.Append("NoNewPrivileges=true\n");
        unit.Append("\n[Install]\n");
        unit.Append("WantedBy=").Append(userUnit ? "default.target" : "multi-user.target").Append('\n');
        return unit.ToString();
    }

    /// <summary>systemd's quoting: double quotes, with backslash, quote and (for specifier expansion) percent escaped;
/// in ExecStart also $ (variable expansion).</summary>
    internal static string Quote(string value) =>
        "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("%", "%%", StringComparison.Ordinal) + "\"";

    public static string[][] InstallCommands(bool userUnit, string userName)
    {
        var systemctl = userUnit ? new[] { "systemctl", "--user" } : ["systemctl"];
        string[][] commands =
        [
            [.. systemctl, "daemon-reload"],
            [.. systemctl, "enable", FileName],
            [.. systemctl, "restart", FileName],
        ];
        // A user's manager runs only while the user is logged in, unless lingering is on: then the service starts with the machine.
        return userUnit ? [.. commands, ["loginctl", "enable-linger", userName]] : commands;
    }

    public static string[][] UninstallCommands(bool userUnit)
    {
        var systemctl = userUnit ? new[] { "systemctl", "--user" } : ["systemctl"];
        return [[.. systemctl, "disable", "--now", FileName]];
    }

    public static string[][] AfterUninstallCommands(bool userUnit) => [userUnit ? ["systemctl", "--user", "daemon-reload"] : ["systemctl", "daemon-reload"]];

    public static string[] StatusCommand(bool userUnit) =>
        userUnit ? ["systemctl", "--user", "status", "--no-pager", FileName] : ["systemctl", "status", "--no-pager", FileName];
}
