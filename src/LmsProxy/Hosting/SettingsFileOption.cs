using Microsoft.Extensions.Configuration.Json;

namespace LmsProxy.Hosting;

/// <summary>
/// `--settings PATH`: a settings file of the user's own (a service's, kept where a reinstall does not replace it), read
/// and watched like appsettings.json, over it: the program's own file still gives every default, and the environment
/// and the command line still win over both.
/// </summary>
internal static class SettingsFileOption
{
    public const string Name = "--settings";

    /// <summary>The file named by `--settings PATH` or `--settings=PATH`, and the arguments without it.</summary>
    public static (string? File, string[] Others) Extract(string[] args)
    {
        string? file = null;
        var rest = new List<string>(args.Length);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == Name && i + 1 < args.Length) file = args[++i];
            else if (args[i].StartsWith(Name + "=", StringComparison.Ordinal)) file = args[i][(Name.Length + 1)..];
            else rest.Add(args[i]);
        }
        return (file is null ? null : Path.GetFullPath(file), [.. rest]);
    }

    /// <summary>Inserts the file right after the program's own appsettings files, before the environment.</summary>
    public static void Add(IConfigurationBuilder configuration, string file)
    {
        var sources = configuration.Sources;
        var last = -1;
        for (var i = 0; i < sources.Count; i++)
        {
            if (sources[i] is JsonConfigurationSource) last = i;
        }
        var source = new JsonConfigurationSource { Path = Path.GetFileName(file), Optional = false, ReloadOnChange = true };
        source.FileProvider = new Microsoft.Extensions.FileProviders.PhysicalFileProvider(Path.GetDirectoryName(file)!);
        sources.Insert(last + 1, source);
    }
}
