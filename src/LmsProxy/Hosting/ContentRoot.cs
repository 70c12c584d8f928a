namespace LmsProxy.Hosting;

internal static class ContentRoot
{
    /// <summary>
    /// The working directory when it holds appsettings.json (`dotnet run` from the repository: the top-level file,
    /// edited in place, is the one watched), else the program's own folder (published output, Docker).
    /// </summary>
    public static string Find() =>
        File.Exists(Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json")) ? Directory.GetCurrentDirectory() : AppContext.BaseDirectory;
}
