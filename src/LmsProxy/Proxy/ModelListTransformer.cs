using System.Text.Json.Nodes;
using LmsProxy.Configuration;
using LmsProxy.Models;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>
/// GET /v1/models: LM Studio's own list, plus every model a host has downloaded that it left out (with JIT off it
/// lists only loaded ones; with several hosts it lists only its own) and the configured aliases, so model pickers
/// can offer all the proxy can serve. Each entry gains a status object in the shape of llama.cpp's router
/// (<c>{"value":"loaded"|"loading"|"unloaded"}</c>, which Open WebUI reads); every other field stays as LM Studio sent it.
/// For a key with a model list (LmsProxy:Keys:&lt;name&gt;:Models) only the models it may use are listed.
/// </summary>
/// <param name="loadStates">Model key to "loaded" or "loading" (Scheduler.LoadStates); a key not in it is unloaded.</param>
internal sealed class ModelListTransformer(HttpTransformer requestTransform, ModelCatalog catalog, LmsProxyOptions options, IReadOnlyDictionary<string, string> loadStates, Keys.ApiKey? key = null) : JsonBodyRewriter(requestTransform)
{
    protected override bool Rewrite(JsonNode root)
    {
        if (root is not JsonObject || root["data"] is not JsonArray data) return false;

        var listed = new HashSet<string>(data.Select(m => (m as JsonObject)?["id"] is JsonValue id && id.TryGetValue<string>(out var text) ? text : null).OfType<string>(), StringComparer.OrdinalIgnoreCase);
        foreach (var model in catalog.Models)
        {
            if (!listed.Add(model.Key)) continue;
            data.Add((JsonNode)new JsonObject { ["id"] = model.Key, ["object"] = "model", ["owned_by"] = ModelLookup.OwnerOf(model.Key) });
        }
        foreach (var alias in options.Loading.Aliases.Keys)
        {
            if (!listed.Add(alias)) continue;
            data.Add((JsonNode)new JsonObject { ["id"] = alias, ["object"] = "model", ["owned_by"] = "lmsproxy-alias" });
        }
        if (key is not null && key.Options.Models.Count > 0)
        {
            for (var i = data.Count - 1; i >= 0; i--)
            {
                if ((data[i] as JsonObject)?["id"]?.GetValue<string>() is not { } id || !key.MayUse(id, catalog, options)) data.RemoveAt(i);
            }
        }
        foreach (var entry in data.OfType<JsonObject>())
        {
            if (entry["id"] is not JsonValue id || !id.TryGetValue<string>(out var name)) continue;
            var resolved = catalog.Resolve(options.Loading.ResolveAlias(name))?.Key ?? name;
            entry["status"] = new JsonObject { ["value"] = loadStates.GetValueOrDefault(resolved, "unloaded") };
        }
        return true;
    }
}
