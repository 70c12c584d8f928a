using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>The proxy's own calls to one LM Studio's REST API: the model catalog, load, unload, and a liveness probe.</summary>
public sealed class LmStudioApi(HttpClient http, Uri baseUrl, string? apiKey)
{
    private static readonly TimeSpan CatalogTimeout = TimeSpan.FromSeconds(30);

    public const string StartHint = "Is LM Studio's server running (lms server start) at that address?";

    public Uri BaseUrl { get; } = baseUrl;

    /// <summary>Downloaded models and their loaded instances: /api/v1/models, or /api/v0/models on LM Studio before 0.4.</summary>
    public async Task<ModelCatalog> GetCatalogAsync(CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(CatalogTimeout);
        using (var doc = await GetJsonAsync("/api/v1/models", cts.Token))
        {
            if (doc?.RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty("models", out var models) && models.ValueKind == JsonValueKind.Array)
            {
                return new ModelCatalog([.. models.EnumerateArray().Select(ParseV1Model).OfType<CatalogModel>()]);
            }
        }
        using (var doc = await GetJsonAsync("/api/v0/models", cts.Token))
        {
            if (doc?.RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array)
            {
                return new ModelCatalog([.. data.EnumerateArray().Select(ParseV0Model).OfType<CatalogModel>()]);
            }
        }
        throw new UpstreamUnavailableException($"LM Studio at {BaseUrl} answered neither /api/v1/models nor /api/v0/models with a model list.");
    }

    /// <summary>POST /api/v1/models/load; returns the instance id.</summary>
    public async Task<string> LoadAsync(string key, ModelLoadSettings modelSettings, CancellationToken cancellationToken)
    {
        using var request = NewRequest(HttpMethod.Post, "/api/v1/models/load");
        request.Content = JsonContent.Create(new LoadRequest(key, modelSettings.ContextLength), LoadingJson.Default.LoadRequest);
        using var response = await SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw ModelLoadException.From($"LM Studio refused to load '{key}' (HTTP {(int)response.StatusCode}): ", text);
        }
        try
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            if (root.TryGetProperty("instance_id", out var id) && id.ValueKind == JsonValueKind.String && id.GetString() is { Length: > 0 } instanceId &&
                (!root.TryGetProperty("status", out var status) || status.GetString() == "loaded"))
            {
                return instanceId;
            }
        }
        catch (JsonException)
        {
        }
        // LM Studio answers 200 to paths it does not know (before 0.4.0 there is no load API): never take that for a load.
        throw ModelLoadException.From($"LM Studio's load API did not confirm '{key}' is loaded (is LM Studio older than 0.4.0? then install lms): ", text);
    }

    /// <summary>POST /api/v1/models/unload. An instance LM Studio does not know is already gone: that is success.</summary>
    public async Task UnloadAsync(string instanceId, CancellationToken cancellationToken)
    {
        using var request = NewRequest(HttpMethod.Post, "/api/v1/models/unload");
        request.Content = JsonContent.Create(new UnloadRequest(instanceId), LoadingJson.Default.UnloadRequest);
        using var response = await SendAsync(request, cancellationToken);
        if (response.IsSuccessStatusCode || response.StatusCode == HttpStatusCode.NotFound) return;
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (text.Contains("model_not_found", StringComparison.OrdinalIgnoreCase) || text.Contains("not found", StringComparison.OrdinalIgnoreCase)) return;
        throw new ModelLoadException($"LM Studio refused to unload '{instanceId}' (HTTP {(int)response.StatusCode}): {Excerpt.Of(text)}");
    }

    /// <summary>True when LM Studio answers its OpenAI-compatible model list.</summary>
    public async Task<(bool Ready, string Detail)> ProbeAsync(CancellationToken cancellationToken)
    {
        try
        {
            using var request = NewRequest(HttpMethod.Get, "/v1/models");
            using var response = await SendAsync(request, cancellationToken);
            return response.IsSuccessStatusCode
                ? (true, "LM Studio answers.")
                : (false, $"LM Studio answered /v1/models with HTTP {(int)response.StatusCode}.");
        }
        catch (UpstreamUnavailableException ex)
        {
            return (false, ex.Message);
        }
    }

    private async Task<JsonDocument?> GetJsonAsync(string path, CancellationToken cancellationToken)
    {
        using var request = NewRequest(HttpMethod.Get, path);
        using var response = await SendAsync(request, cancellationToken);
        if (response.StatusCode is HttpStatusCode.NotFound) return null;
        if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            throw new UpstreamRefusedException($"LM Studio at {BaseUrl} refused the proxy's request for {path} (HTTP {(int)response.StatusCode}); set the host's API key (LmsProxy:UpstreamApiKey or LmsProxy:Hosts:<name>:ApiKey) to an LM Studio API token.");
        }
        try
        {
            return await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(cancellationToken), cancellationToken: cancellationToken);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private HttpRequestMessage NewRequest(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, new Uri(BaseUrl, path));
        if (apiKey is { Length: > 0 } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            return await http.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new UpstreamUnavailableException($"LM Studio at {BaseUrl} is not reachable: {ex.Message}. {StartHint}", ex);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested || ex is TaskCanceledException { InnerException: TimeoutException })
        {
            throw new UpstreamUnavailableException($"LM Studio at {BaseUrl} did not answer in time.", ex);
        }
    }

    private static CatalogModel? ParseV1Model(JsonElement m)
    {
        if (!m.TryGetProperty("key", out var key) || key.GetString() is not { Length: > 0 } k) return null;
        var instances = new List<LoadedInstance>();
        if (m.TryGetProperty("loaded_instances", out var loaded) && loaded.ValueKind == JsonValueKind.Array)
        {
            foreach (var instance in loaded.EnumerateArray())
            {
                if (!instance.TryGetProperty("id", out var id) || id.GetString() is not { Length: > 0 } i) continue;
                var config = instance.TryGetProperty("config", out var c) && c.ValueKind == JsonValueKind.Object ? c : default;
                instances.Add(new LoadedInstance(i, Int(config, "context_length"), Int(config, "parallel")));
            }
        }
        return new CatalogModel(k, Text(m, "type") ?? "llm", instances,
            m.TryGetProperty("size_bytes", out var size) && size.TryGetInt64(out var bytes) ? bytes : 0, Int(m, "max_context_length"));
    }

    private static CatalogModel? ParseV0Model(JsonElement m)
    {
        if (!m.TryGetProperty("id", out var id) || id.GetString() is not { Length: > 0 } k) return null;
        var loaded = Text(m, "state") == "loaded";
        return new CatalogModel(k, Text(m, "type") ?? "llm", loaded ? [new LoadedInstance(k, Int(m, "loaded_context_length"))] : [], 0, Int(m, "max_context_length"));
    }

    private static string? Text(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static int? Int(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.TryGetInt32(out var n) ? n : null;
}
