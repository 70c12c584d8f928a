namespace LmsProxy.Loading;

/// <summary>Finds the lms executable: the configured path, then PATH, then LM Studio's home (~/.lmstudio/bin/lms).</summary>
public static class LmsLocator
{
    public static string? Find(string? configuredPath)
    {
        if (!string.IsNullOrWhiteSpace(configuredPath)) return File.Exists(configuredPath) ? Path.GetFullPath(configuredPath) : null;

        var name = OperatingSystem.IsWindows() ? "lms.exe" : "lms";
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        var inHome = Path.Combine(LmStudioHome(), "bin", name);
        return File.Exists(inHome) ? inHome : null;
    }

    /// <summary>LM Studio's home: the pointer file's target, else ~/.cache/lm-studio if present, else ~/.lmstudio.</summary>
    private static string LmStudioHome()
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        try
        {
            var pointer = Path.Combine(home, ".lmstudio-home-pointer");
            if (File.Exists(pointer) && File.ReadAllText(pointer).Trim() is { Length: > 0 } target) return target;
        }
        catch (IOException)
        {
        }
        var cache = Path.Combine(home, ".cache", "lm-studio");
        return Directory.Exists(cache) ? cache : Path.Combine(home, ".lmstudio");
    }
}
