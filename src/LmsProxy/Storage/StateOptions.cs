namespace LmsProxy.Storage;

/// <summary>The <c>LmsProxy:State</c> section, read once at start.</summary>
internal sealed class StateOptions
{
    public const string SectionName = "LmsProxy:State";

    /// <summary>The SQLite file; empty: memory only. Unset: <see cref="DefaultPath"/>.</summary>
    public string Path { get; set; } = "";

    /// <summary>Activity records older than this are deleted.</summary>
    public TimeSpan ActivityRetention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>At most this many activity records are kept (the oldest go first).</summary>
    public int ActivityMaxRows { get; set; } = 100_000;

    /// <summary>How often the writer takes what has queued up (one transaction).</summary>
    public TimeSpan FlushInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>The user's data folder: %LOCALAPPDATA%\LmsProxy, ~/.local/share/LmsProxy, ~/Library/Application Support/LmsProxy.</summary>
    public static string DefaultPath()
    {
        var root = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
        return string.IsNullOrEmpty(root) ? "" : System.IO.Path.Combine(root, "LmsProxy", "lmsproxy.db");
    }

    public static StateOptions From(IConfiguration configuration)
    {
        var options = new StateOptions();
        var section = configuration.GetSection(SectionName);
        section.Bind(options);
        // Unset means the default file; set to "" means memory only.
        if (section["Path"] is null) options.Path = DefaultPath();
        return options;
    }
}
