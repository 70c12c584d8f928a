using LmsProxy.Configuration;

namespace LmsProxy.Loading;

/// <summary>Which loader is in use and why; decided at start-up and again when the settings change.</summary>
public sealed record LoaderChoice(string Name, string? LmsPath, string Reason, IModelLoader Loader);

public sealed class LoaderSelector
{
    private readonly ProxySettings _settings;
    private readonly RestModelLoader _rest;
    private volatile LoaderChoice _current;

    public LoaderSelector(ProxySettings settings, RestModelLoader rest)
    {
        _settings = settings;
        _rest = rest;
        _current = Choose(settings.Current);
        settings.Changed += options =>
        {
            var next = Choose(options);
            if (next.Name != _current.Name || next.LmsPath != _current.LmsPath) _current = next;
        };
    }

    public LoaderChoice Current => _current;

    public const string InstallHint = "Install it with LM Studio's `lms bootstrap` (after running LM Studio once) or `npx lmstudio install-cli`, or set LmsProxy:Lms:Path.";

    private LoaderChoice Choose(LmsProxyOptions options)
    {
        if (options.Loader == LoaderKind.Rest)
        {
            return new("rest", null, "LmsProxy:Loader is 'rest': loading through LM Studio's REST API (POST /api/v1/models/load).", _rest);
        }
        var path = LmsLocator.Find(options.Lms.Path);
        if (path is not null)
        {
            return new("lms", path, $"lms found at {path}.", new LmsCliLoader(path, _settings));
        }
        var where = string.IsNullOrWhiteSpace(options.Lms.Path) ? "on PATH or in ~/.lmstudio/bin" : $"at {options.Lms.Path}";
        if (options.Loader == LoaderKind.Lms)
        {
            return new("lms", null, $"LmsProxy:Loader is 'lms' but lms was not found {where}: loads will fail. {InstallHint}", new MissingLmsLoader(where));
        }
        return new("rest", null, $"lms was not found {where}; falling back to LM Studio's REST API (POST /api/v1/models/load). {InstallHint}", _rest);
    }

    private sealed class MissingLmsLoader(string where) : IModelLoader
    {
        public Task<string> LoadAsync(Models.CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken) =>
            throw new ModelLoadException($"lms was not found {where}. {InstallHint}");
    }
}
