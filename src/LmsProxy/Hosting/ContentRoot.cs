namespace LmsProxy.Hosting;

internal static class ContentRoot
{
    /// <summary>
    /// Where appsettings.json is read (and watched) from: the working directory, or the repository around it
    /// (`dotnet run --project src/LmsProxy` runs in the project folder; the top-level file is the one to edit),
    /// else the program's own folder (published output, Docker).
    /// </summary>
    public static string Find()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            var hasSettings = File.Exists(Path.Combine(dir.FullName, "appsettings.json"));
            if (hasSettings && (dir.FullName == Directory.GetCurrentDirectory() || File.Exists(Path.Combine(dir.FullName, "LmsProxy.sln"))))
            {
                return dir.FullName;
            }
        }
        return AppContext.BaseDirectory;
    }
}
