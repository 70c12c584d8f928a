using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>
/// Loads and unloads through LM Studio's REST API (POST /api/v1/models/load, /unload): exact key, no process to run.
/// Only a base key loads (a variant key gets 404 model_not_found, F3/F13), so the variant it got is checked after.
/// </summary>
internal sealed class RestModelLoader(LmStudioApi api) : IModelLoader
{
    public string Name => "rest";

    public async Task<string> LoadAsync(CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken)
    {
        var id = await api.LoadAsync(model.Key, settings, cancellationToken);
        await LoadVerification.CheckVariantAsync(api, model, id, cancellationToken);
        return id;
    }

    public async Task UnloadAsync(string instanceId, CancellationToken cancellationToken)
    {
        await api.UnloadAsync(instanceId, cancellationToken);
        api.LoadedVariants.Forget(instanceId);
    }
}
