namespace LmsProxy.Hosting;

internal static class ContentRoot
{
    /// <summary>
    /// Where appsettings.json is read (and watched) from.
    /// <list type="bullet">
    /// <item>Installed as a .NET tool (<c>dotnet tool install</c>; the tool's folder holds the DotnetToolSettings.xml
    /// that every tool package carries): the tool's own folder, always. A tool is started from whatever directory the
    /// user happens to be in, and an appsettings.json there almost always belongs to something else (every ASP.NET
    /// project has one); reading it would quietly change the upstream, the API keys or the aliases, and watching it
    /// would apply that project's edits to the proxy. So a tool never looks at the working directory: its settings are
    /// the file next to it (<c>lmsproxy --help</c> prints where), the environment and the command line.</item>
    /// <item>Otherwise, as before: the working directory, or the repository around it (<c>dotnet run --project
    /// src/LmsProxy</c>; the top-level file is the one to edit), else the program's own folder (published output,
    /// Docker).</item>
    /// </list>
    /// </summary>
    public static string Find() => Find(AppContext.BaseDirectory, Directory.GetCurrentDirectory());

    internal static string Find(string programDirectory, string workingDirectory)
    {
        if (IsInstalledTool(programDirectory)) return programDirectory;
        var start = new DirectoryInfo(workingDirectory);
        for (var dir = start; dir is not null; dir = dir.Parent)
        {
            var hasSettings = File.Exists(SettingsFile(dir.FullName));
            if (hasSettings && (dir.FullName == start.FullName || File.Exists(Path.Combine(dir.FullName, "LmsProxy.sln"))))
            {
                return dir.FullName;
            }
        }
        return programDirectory;
    }

    /// <summary>The settings file read from <paramref name="contentRoot"/>.</summary>
    public static string SettingsFile(string contentRoot) => Path.Combine(contentRoot, "appsettings.json");

    /// <summary>Whether <paramref name="programDirectory"/> is an installed .NET tool's folder (JIT or native).</summary>
    internal static bool IsInstalledTool(string programDirectory) => File.Exists(Path.Combine(programDirectory, "DotnetToolSettings.xml"));
}
