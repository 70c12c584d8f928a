using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>Loads and unloads through LM Studio's REST API (POST /api/v1/models/load, /unload): exact key, no process to run.</summary>
public sealed class RestModelLoader(LmStudioApi api) : IModelLoader
{
    public string Name => "rest";

    public Task<string> LoadAsync(CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken) =>
        api.LoadAsync(model.Key, settings, cancellationToken);

    public Task UnloadAsync(string instanceId, CancellationToken cancellationToken) => api.UnloadAsync(instanceId, cancellationToken);
}
