namespace LmsProxy.Loading;

/// <summary>
/// Finds the lms executable: the configured path, then PATH, then LM Studio's home. The home is where lms itself
/// resolves it (contract §3.1, F7): the pointer file's target, ~/.cache/lm-studio, ~/.lmstudio; each is tried, as
/// a Windows install may keep lms.exe in either layout, and `lms bootstrap` puts it on the User PATH only, which a
/// service does not see.
/// </summary>
internal static class LmsLocator
{
    /// <param name="home">The user's home folder; null: this process's.</param>
    /// <param name="windows">Look for lms.exe; null: by the OS this runs on.</param>
    public static string? Find(string? configuredPath, string? home = null, bool? windows = null, string? path = null)
    {
        if (!string.IsNullOrWhiteSpace(configuredPath)) return File.Exists(configuredPath) ? Path.GetFullPath(configuredPath) : null;

        var name = windows ?? OperatingSystem.IsWindows() ? "lms.exe" : "lms";
        foreach (var dir in (path ?? Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        foreach (var lmStudioHome in LmStudioHomes(home ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)))
        {
            var inHome = Path.Combine(lmStudioHome, "bin", name);
            if (File.Exists(inHome)) return inHome;
        }
        return null;
    }

    /// <summary>LM Studio's possible homes, in lms's order: the pointer file's target, ~/.cache/lm-studio, ~/.lmstudio.</summary>
    public static IEnumerable<string> LmStudioHomes(string home)
    {
        string? pointed = null;
        try
        {
            var pointer = Path.Combine(home, ".lmstudio-home-pointer");
            if (File.Exists(pointer) && File.ReadAllText(pointer).Trim() is { Length: > 0 } target) pointed = target;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        if (pointed is not null) yield return pointed;
        yield return Path.Combine(home, ".cache", "lm-studio");
        yield return Path.Combine(home, ".lmstudio");
    }
}
