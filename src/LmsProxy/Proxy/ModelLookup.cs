using LmsProxy.Configuration;
using LmsProxy.Scheduling;

namespace LmsProxy.Proxy;

/// <summary>
/// GET /v1/models/{id}: LM Studio has no such endpoint (it answers 200 "Unexpected endpoint"), yet OpenAI clients call it
/// (models.retrieve). The proxy answers from its catalog in OpenAI's model shape; aliases resolve too.
/// </summary>
internal static class ModelLookup
{
    public const string Prefix = "/v1/models/";

    public static Task AnswerAsync(HttpContext context, Scheduler scheduler, LmsProxyOptions options)
    {
        // The id may contain a slash, sent as %2F (Kestrel leaves that one escaped) or as a plain '/'.
        var id = Uri.UnescapeDataString(context.Request.Path.Value![Prefix.Length..]);
        if (Keys.ApiKey.Of(context) is { } key && !key.MayUse(id, scheduler.Catalog, options))
        {
            return new ProxyError(StatusCodes.Status403Forbidden, "model_not_allowed", $"The key '{key.Name}' may not use '{id}' (LmsProxy:Keys:{key.Name}:Models).").WriteAsync(context);
        }
        if (options.Loading.Aliases.TryGetValue(id, out var target) && scheduler.Catalog.Resolve(target) is not null)
        {
            return Results.Json(Describe(id, "lmsproxy-alias"), ProxyJson.Default.ModelDescription).ExecuteAsync(context);
        }
        if (scheduler.Catalog.Resolve(id) is { } model && string.Equals(model.Key, id, StringComparison.OrdinalIgnoreCase))
        {
            return Results.Json(Describe(model.Key, OwnerOf(model.Key)), ProxyJson.Default.ModelDescription).ExecuteAsync(context);
        }
        return new ProxyError(StatusCodes.Status404NotFound, "model_not_found",
            $"The model '{id}' does not exist: it is neither downloaded in LM Studio nor an alias (GET /v1/models lists them).").WriteAsync(context);
    }

    /// <summary>The owner field LM Studio's list uses: the publisher before the slash.</summary>
    public static string OwnerOf(string key) => key.IndexOf('/') is > 0 and var slash ? key[..slash] : "organization_owner";

    private static ModelDescription Describe(string id, string owner) => new(id, "model", 0, owner);
}
