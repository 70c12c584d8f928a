using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>Loads through LM Studio's REST API (POST /api/v1/models/load): exact key, no process to run.</summary>
public sealed class RestModelLoader(LmStudioApi api) : IModelLoader
{
    public Task<string> LoadAsync(CatalogModel model, ModelLoadSettings settings, CancellationToken cancellationToken) =>
        api.LoadAsync(model.Key, settings, cancellationToken);
}
