using System.Text.Json.Nodes;
using LmsProxy.Configuration;
using LmsProxy.Models;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Keys;

/// <summary>
/// LM Studio's own model lists (GET /api/v1/models: "models" by "key"; GET /api/v0/models: "data" by "id") for a key
/// with a model list: only the models it may use, as GET /v1/models does. Anything it cannot read passes as it is.
/// </summary>
internal sealed class NativeModelListFilter(HttpTransformer requestTransform, ApiKey key, ModelCatalog catalog, LmsProxyOptions options)
    : Proxy.JsonBodyRewriter(requestTransform)
{
    /// <summary>Whether the request is one of those lists, asked with a key that has a model list.</summary>
    public static bool Applies(HttpRequest request, ApiKey? key) =>
        key is { Options.Models.Count: > 0 } && HttpMethods.IsGet(request.Method)
        && (request.Path.Equals("/api/v1/models", StringComparison.OrdinalIgnoreCase) || request.Path.Equals("/api/v0/models", StringComparison.OrdinalIgnoreCase));

    protected override bool Rewrite(JsonNode root)
    {
        var (list, field) = root is JsonObject o && o["models"] is JsonArray models ? (models, "key") : root is JsonObject d && d["data"] is JsonArray data ? (data, "id") : (null, "");
        if (list is null) return false;
        for (var i = list.Count - 1; i >= 0; i--)
        {
            var name = list[i] is JsonObject entry && entry[field] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;
            if (name is null || !key.MayUse(name, catalog.Resolve(name)?.Key, options)) list.RemoveAt(i);
        }
        return true;
    }
}
