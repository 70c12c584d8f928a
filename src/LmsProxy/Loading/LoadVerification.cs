using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>
/// After a load of a multi-variant model: which variant LM Studio loaded. Loading the base key loads whatever variant is
/// selected now, and that can change between the proxy's last look and the load (F3); other weights than the ones the
/// proxy planned for are never served silently.
/// </summary>
internal static class LoadVerification
{
    public static async Task CheckVariantAsync(LmStudioApi api, CatalogModel planned, string instanceId, CancellationToken cancellationToken)
    {
        if (!planned.HasVariants) return;
        var now = (await api.GetCatalogAsync(cancellationToken)).Resolve(planned.Key);
        if (now?.SelectedVariant is not { } loaded) return;
        api.LoadedVariants.Record(instanceId, loaded);
        if (planned.SelectedVariant is { } expected && !string.Equals(expected, loaded, StringComparison.OrdinalIgnoreCase))
        {
            throw new ModelLoadException(
                $"LM Studio loaded '{planned.Key}' as {loaded} ({now.Quantization ?? "quantization not listed"}), not as {expected}, the variant it had selected before the load: " +
                $"its selected variant changed (LM Studio does that, e.g. when another download of the model finishes). Requests for {expected} are refused " +
                $"until {expected} is selected again in LM Studio (My Models → {planned.Key} → variant); requests for '{planned.Key}' get {loaded}.");
        }
    }
}
