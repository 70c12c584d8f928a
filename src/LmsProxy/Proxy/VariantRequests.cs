using LmsProxy.Models;
using LmsProxy.Scheduling;

namespace LmsProxy.Proxy;

/// <summary>
/// Requests that name a variant ("google/gemma-4-31b@8bit"). LM Studio refuses to load a variant key (lms load:
/// "Model not found"; REST: 404 model_not_found, F3/F13) and loads the selected variant when given the base key. So a
/// request for the variant LM Studio has selected (or loaded) goes on as a request for the base key, one load of it;
/// any other variant is refused at once with what to do, rather than served with other weights or re-sent for ever.
/// Names without '@' cost one IndexOf.
/// </summary>
internal static class VariantRequests
{
    public const string NotSelectedCode = "model_variant_not_selected";

    /// <summary>The model to ask LM Studio for, or an error for the client (decided on a fresh read of the hosts' lists).</summary>
    public static async ValueTask<(string Target, ProxyError? Error)> ResolveAsync(string model, Scheduler scheduler, CancellationToken cancellationToken)
    {
        if (model.IndexOf('@') <= 0) return (model, null);
        var first = Resolve(model, scheduler);
        if (first.Error is null && (first.Target != model || scheduler.Catalog.Resolve(model) is { } exact && string.Equals(exact.Key, model, StringComparison.OrdinalIgnoreCase))) return first;
        // A refusal is rare and final for the client, and a name not listed yet (right after start-up) must not go to
        // LM Studio as a variant key: decide both on what LM Studio says now, not on the last refresh.
        await scheduler.RefreshAllAsync(cancellationToken);
        return Resolve(model, scheduler);
    }

    private static (string Target, ProxyError? Error) Resolve(string model, Scheduler scheduler)
    {
        var at = model.IndexOf('@');
        var known = scheduler.Catalog.Resolve(model);
        // Unknown names are the scheduler's to answer; a key that itself contains '@' (a non-virtual MLX model) is exact.
        if (known is null || string.Equals(known.Key, model, StringComparison.OrdinalIgnoreCase)) return (model, null);

        if (!known.HasVariants)
        {
            var quant = model[(at + 1)..];
            return known.Quantization is { } q && string.Equals(q, quant, StringComparison.OrdinalIgnoreCase)
                ? (known.Key, null)
                : (model, new ProxyError(StatusCodes.Status404NotFound, "model_not_found",
                    $"'{known.Key}' is downloaded in LM Studio as {known.Quantization ?? "one file"} only, not as {quant}. Request '{known.Key}', or download that quantization in LM Studio."));
        }
        if (known.VariantNamed(model) is not { } wanted)
        {
            return (model, new ProxyError(StatusCodes.Status404NotFound, "model_not_found",
                $"'{model}' is not a variant of '{known.Key}' that LM Studio lists. Its variants: {string.Join(", ", known.Variants!)}."));
        }

        var served = new List<(string Host, string? Variant, bool Loaded)>();
        foreach (var host in scheduler.Hosts)
        {
            if (host.Removed || !host.Allows(known.Key) || host.Catalog.Resolve(known.Key) is not { } there) continue;
            // Weights already loaded are what an instance serves, whatever is selected now (recorded right after the load).
            var loaded = there.Instances.Select(i => host.Api.LoadedVariants.VariantOf(i.Id)).FirstOrDefault(v => v is not null);
            served.Add((host.Name, loaded ?? there.SelectedVariant, loaded is not null));
        }
        if (served.Count > 0 && served.All(s => string.Equals(s.Variant, wanted, StringComparison.OrdinalIgnoreCase))) return (known.Key, null);

        var now = string.Join("; ", served.Select(s => (served.Count > 1 ? $"host '{s.Host}': " : "") + (s.Loaded ? $"{s.Variant} is loaded" : $"{s.Variant ?? "none"} is selected")));
        return (model, new ProxyError(StatusCodes.Status409Conflict, NotSelectedCode,
            $"'{wanted}' is not the variant of '{known.Key}' that LM Studio serves now ({now}). LM Studio loads only a model's selected variant and refuses a variant key, " +
            $"so the proxy cannot load {wanted} for you. To use it, select {wanted} for {known.Key} in LM Studio (My Models → {known.Key} → variant; unload the model if it is loaded), " +
            $"then retry; or request '{known.Key}' to get what is selected."));
    }
}
