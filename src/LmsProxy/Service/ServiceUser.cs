namespace LmsProxy.Service;

/// <summary>
/// The OS user a service runs as: the one who runs LM Studio. `lms` finds LM Studio's server and its key through that
/// user's home (~/.lmstudio), so a service under any other account cannot use it.
/// </summary>
internal static class ServiceUser
{
    /// <summary>Who installs: under sudo the user who typed sudo (root almost never runs LM Studio), else the current user.</summary>
    public static (string Name, string Home) Current()
    {
        var name = Environment.GetEnvironmentVariable("SUDO_USER") is { Length: > 0 } sudoUser && !OperatingSystem.IsWindows() ? sudoUser : Environment.UserName;
        var home = (OperatingSystem.IsWindows() ? null : HomeFromPasswd(name, "/etc/passwd")) ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return (name, home);
    }

    /// <summary>The home folder /etc/passwd gives <paramref name="user"/> (name:password:uid:gid:gecos:home:shell).</summary>
    internal static string? HomeFromPasswd(string user, string passwdFile)
    {
        if (!File.Exists(passwdFile)) return null;
        foreach (var line in File.ReadLines(passwdFile))
        {
            var fields = line.Split(':');
            if (fields.Length >= 7 && fields[0] == user) return fields[5];
        }
        return null;
    }

    /// <summary>LM Studio's folders in a home: ~/.lmstudio (current releases), ~/.cache/lm-studio (older ones).</summary>
    public static readonly string[] LmStudioFolders = [".lmstudio", Path.Combine(".cache", "lm-studio")];

    /// <summary>A warning when <paramref name="home"/> holds no LM Studio folder; null when it does.</summary>
    public static string? LmStudioWarning(string user, string home) =>
        LmStudioFolders.Any(f => Directory.Exists(Path.Combine(home, f))) ? null
            : $"warning: {Path.Combine(home, ".lmstudio")} does not exist (nor ~/.cache/lm-studio): user '{user}' does not seem to run LM Studio. " +
              "The service runs as this user, and lms finds LM Studio's server and key through this user's home; " +
              "install the service as the user who runs LM Studio (or use LmsProxy:Loader=rest with LM Studio's URL).";
}
