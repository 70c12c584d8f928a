using System.Security;
using System.Text;

namespace LmsProxy.Service;

/// <summary>
/// macOS: a launchd agent of the user who runs LM Studio (LM Studio is an app of that user's session). Started at
/// login and at once, restarted when it exits with a failure (KeepAlive SuccessfulExit=false), logs in ~/Library/Logs.
/// </summary>
internal static class LaunchdAgent
{
    public const string Label = "com.lmsproxy";

    public static string PathFor(string userHome) => Path.Combine(userHome, "Library", "LaunchAgents", Label + ".plist");

    public static string LogPath(string userHome) => Path.Combine(userHome, "Library", "Logs", "LmsProxy.log");

    public static string Render(ServiceDefinition service)
    {
        var plist = new StringBuilder();
        plist.Append("""
            <?xml version="1.0" encoding="UTF-8"?>
            <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
            <!-- Written by `lmsproxy service install`; `lmsproxy service uninstall` removes it. -->
            <plist version="1.0">
            <dict>

            """);
        Key(plist, "Label").Append("  <string>").Append(Label).Append("</string>\n");
        Key(plist, "ProgramArguments").Append("  <array>\n");
        foreach (var argument in service.CommandLine) plist.Append("    <string>").Append(Escape(argument)).Append("</string>\n");
        plist.Append("  </array>\n");
        Key(plist, "WorkingDirectory").Append("  <string>").Append(Escape(service.WorkingDirectory)).Append("</string>\n");
        Key(plist, "EnvironmentVariables").Append("  <dict>\n");
        foreach (var (name, value) in service.Environment)
        {
            plist.Append("    <key>").Append(Escape(name)).Append("</key>\n    <string>").Append(Escape(value)).Append("</string>\n");
        }
        plist.Append("  </dict>\n");
        Key(plist, "RunAtLoad").Append("  <true/>\n");
        Key(plist, "KeepAlive").Append("  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n");
        Key(plist, "ThrottleInterval").Append("  <integer>5</integer>\n");
        Key(plist, "ProcessType").Append("  <string>Background</string>\n");
        Key(plist, "StandardOutPath").Append("  <string>").Append(Escape(LogPath(service.UserHome))).Append("</string>\n");
        Key(plist, "StandardErrorPath").Append("  <string>").Append(Escape(LogPath(service.UserHome))).Append("</string>\n");
        plist.Append("</dict>\n</plist>\n");
        return plist.ToString();
    }

    private static StringBuilder Key(StringBuilder plist, string key) => plist.Append("  <key>").Append(key).Append("</key>\n");

    private static string Escape(string value) => SecurityElement.Escape(value);

    /// <summary>launchctl's domain of the user's GUI session.</summary>
    public static string Domain(uint uid) => $"gui/{uid}";

    public static string[][] InstallCommands(uint uid, string plistPath) =>
    [
        ["launchctl", "bootout", $"{Domain(uid)}/{Label}"],   // an earlier install; fails harmlessly when there is none
        ["launchctl", "bootstrap", Domain(uid), plistPath],
    ];

    public static string[][] UninstallCommands(uint uid) => [["launchctl", "bootout", $"{Domain(uid)}/{Label}"]];

    public static string[] StatusCommand(uint uid) => ["launchctl", "print", $"{Domain(uid)}/{Label}"];
}
