using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>Which loader a host uses and why.</summary>
/// <param name="ChosenBecause">Why it was chosen; <see cref="Reason"/> adds what was learned since (e.g. a flag lms does not know).</param>
internal sealed record LoaderChoice(string Name, string? LmsPath, string ChosenBecause, IModelLoader Loader)
{
    public string Reason => Loader is LmsCliLoader { Notes: { Length: > 0 } notes } ? ChosenBecause + " " + notes : ChosenBecause;
}

/// <summary>
/// Chooses a host's loader: lms for an LM Studio on this machine when it is installed, else REST. Never lms for a
/// remote host with a token: lms --host cannot send one (F6).
/// </summary>
internal static class LoaderSelector
{
    public const string InstallHint = "Install it with LM Studio's `lms bootstrap` (after running LM Studio once) or `npx lmstudio install-cli`, or set LmsProxy:Lms:Path.";

    public static LoaderChoice Choose(LmStudioHostOptions host, LmStudioApi api, ProxySettings settings, ILogger? logger = null)
    {
        var options = settings.Current;
        var rest = new RestModelLoader(api);
        if (host.Loader == LoaderKind.Rest)
        {
            return new("rest", null, "Loader is 'rest': loading through LM Studio's REST API (POST /api/v1/models/load).", rest);
        }
        var url = host.Url!;
        if (!url.IsLoopback && host.ApiKey is { Length: > 0 })
        {
            var asked = host.Loader == LoaderKind.Lms ? "Loader is 'lms', but " : "";
            return new("rest", null, $"{asked}LM Studio at {url} is on another machine and needs an API token, which lms --host cannot send: loading through its REST API.", rest);
        }
        if (host.Loader == LoaderKind.Auto && !url.IsLoopback)
        {
            return new("rest", null, $"LM Studio at {url} is on another machine: loading through its REST API.", rest);
        }
        var path = LmsLocator.Find(options.Loading.Lms.Path);
        if (path is not null)
        {
            return new("lms", path, $"lms found at {path}.", new LmsCliLoader(path, url, settings, api, logger));
        }
        var where = string.IsNullOrWhiteSpace(options.Loading.Lms.Path) ? "on PATH or in LM Studio's home (~/.lmstudio/bin, ~/.cache/lm-studio/bin)" : $"at {options.Loading.Lms.Path}";
        if (host.Loader == LoaderKind.Lms)
        {
            return new("lms", null, $"Loader is 'lms' but lms was not found {where}: loads will fail. {InstallHint}", new MissingLmsLoader(where));
        }
        return new("rest", null, $"lms was not found {where}; falling back to LM Studio's REST API (POST /api/v1/models/load). {InstallHint}", rest);
    }

    private sealed class MissingLmsLoader(string where) : IModelLoader
    {
        public string Name => "lms";

        public Task<string> LoadAsync(CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken) =>
            throw new ModelLoadException($"lms was not found {where}. {InstallHint}");

        public Task UnloadAsync(string instanceId, CancellationToken cancellationToken) =>
            throw new ModelLoadException($"lms was not found {where}. {InstallHint}");
    }
}
