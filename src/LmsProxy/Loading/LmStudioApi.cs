using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>The proxy's own calls to one LM Studio's REST API: the model catalog, load, unload, and a liveness probe.</summary>
/// <param name="hostName">The host's name in the settings, for messages that tell which setting to fix.</param>
/// <remarks>
/// Every failure to reach or hear from LM Studio, an internal time-out included, leaves here as an
/// <see cref="UpstreamUnavailableException"/>: a silent host is unavailable, never a cancellation that callers (a
/// request, a background loop) would mistake for their own.
/// </remarks>
internal sealed class LmStudioApi(HttpClient http, Uri baseUrl, string? apiKey, string hostName = "default", Func<TimeSpan>? timeout = null)
{
    private TimeSpan Timeout => timeout?.Invoke() ?? TimeSpan.FromSeconds(30);

    public const string StartHint = "Is LM Studio's server running at that address (LM Studio: Developer → Start Server; see the README's troubleshooting before using `lms server start`)?";

    public Uri BaseUrl { get; } = baseUrl;

    public string HostName { get; } = hostName;

    /// <summary>Which app serves the host, from its /lmstudio-greeting: "LM Studio", or "LM Studio Bionic" (F26); null until read.</summary>
    public HostApp? App { get; private set; }

    /// <summary>The variant each instance the proxy loaded was loaded with (instance id → variant key), read right after the load (F3).</summary>
    public VariantLedger LoadedVariants { get; } = new();

    /// <summary>Downloaded models and their loaded instances: /api/v1/models, or /api/v0/models on LM Studio before 0.4.</summary>
    public async Task<ModelCatalog> GetCatalogAsync(CancellationToken cancellationToken)
    {
        var limit = Timeout;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(limit);
        try
        {
            var catalog = await ReadCatalogAsync(cts.Token);
            // Which app it is, once, after it answered (a host that is down costs no second attempt).
            if (App is null) await ReadGreetingAsync(cts.Token);
            return catalog;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new UpstreamUnavailableException($"LM Studio at {BaseUrl} did not answer its model list within {limit.TotalSeconds:0.#} s (LmsProxy:ApiTimeout).", ex);
        }
    }

    private async Task<ModelCatalog> ReadCatalogAsync(CancellationToken cancellationToken)
    {
        using (var doc = await GetJsonAsync("/api/v1/models", cancellationToken))
        {
            if (doc?.RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty("models", out var models) && models.ValueKind == JsonValueKind.Array)
            {
                var v1 = new ModelCatalog([.. models.EnumerateArray().Select(ParseV1Model).OfType<CatalogModel>()]);
                // F15: an instance under a variant key can be missing from this list; v0's state still shows it.
                return v1.Models.Any(m => m.HasVariants && !m.IsLoaded) ? await CrossCheckV0Async(v1, cancellationToken) : v1;
            }
        }
        using (var doc = await GetJsonAsync("/api/v0/models", cancellationToken))
        {
            if (doc?.RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array)
            {
                return new ModelCatalog([.. data.EnumerateArray().Select(ParseV0Model).OfType<CatalogModel>()]);
            }
            if (doc?.RootElement is { ValueKind: JsonValueKind.Object } error && Text(error, "error") is { } text && UpstreamAuth.IsUnexpectedEndpoint(text))
            {
                // Its own model list "unknown": LM Studio's answer to a missing or wrong token on /v1 and /api/v0 (F16).
                throw new UpstreamRefusedException(UpstreamAuth.Message(HostName, BaseUrl, apiKey is { Length: > 0 }, "it answered /api/v0/models with HTTP 200 \"Unexpected endpoint or method\""));
            }
        }
        throw new UpstreamUnavailableException($"LM Studio at {BaseUrl} answered neither /api/v1/models nor /api/v0/models with a model list.");
    }

    /// <summary>Adds the loaded state /api/v0/models shows for multi-variant models /api/v1/models lists as not loaded (F15).</summary>
    private async Task<ModelCatalog> CrossCheckV0Async(ModelCatalog v1, CancellationToken cancellationToken)
    {
        using var doc = await GetJsonAsync("/api/v0/models", cancellationToken);
        if (doc?.RootElement is not { ValueKind: JsonValueKind.Object } root || !root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array) return v1;
        var loaded = data.EnumerateArray().Select(ParseV0Model).OfType<CatalogModel>().Where(m => m.IsLoaded).ToDictionary(m => m.Key, StringComparer.OrdinalIgnoreCase);
        if (loaded.Count == 0) return v1;
        return new ModelCatalog([.. v1.Models.Select(m => m.HasVariants && !m.IsLoaded && loaded.TryGetValue(m.Key, out var v0) ? m with { Instances = v0.Instances } : m)]);
    }

    /// <summary>GET /lmstudio-greeting: which app it is (best effort; it needs no token).</summary>
    private async Task ReadGreetingAsync(CancellationToken cancellationToken)
    {
        try
        {
            using var request = NewRequest(HttpMethod.Get, "/lmstudio-greeting");
            using var response = await http.SendAsync(request, cancellationToken);
            if (!response.IsSuccessStatusCode) return;
            App = HostApp.FromGreeting(await response.Content.ReadAsStringAsync(cancellationToken));
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
        }
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

    /// <summary>
    /// True when LM Studio answers and takes the proxy's token: its greeting (which app), then its model list, as
    /// /v1/models can answer a refused token with HTTP 200 "Unexpected endpoint" (F16).
    /// </summary>
    public async Task<(bool Ready, string Detail)> ProbeAsync(CancellationToken cancellationToken)
    {
        var limit = Timeout;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(limit);
        try
        {
            await ReadGreetingAsync(cts.Token);
            using var request = NewRequest(HttpMethod.Get, "/api/v1/models");
            using var response = await SendAsync(request, cts.Token);
            var body = await response.Content.ReadAsStringAsync(cts.Token);
            var app = App?.Name ?? "LM Studio";
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                return (false, UpstreamAuth.Message(HostName, BaseUrl, apiKey is { Length: > 0 }, $"HTTP {(int)response.StatusCode} on /api/v1/models"));
            }
            if (response.IsSuccessStatusCode && !UpstreamAuth.IsUnexpectedEndpoint(body)) return (true, $"{app} answers.");
            // Before 0.4 there is no /api/v1: the OpenAI list says whether it is up.
            using var v1 = NewRequest(HttpMethod.Get, "/v1/models");
            using var old = await SendAsync(v1, cts.Token);
            var oldBody = await old.Content.ReadAsStringAsync(cts.Token);
            if (old.IsSuccessStatusCode && UpstreamAuth.IsUnexpectedEndpoint(oldBody))
            {
                return (false, UpstreamAuth.Message(HostName, BaseUrl, apiKey is { Length: > 0 }, "HTTP 200 \"Unexpected endpoint or method\" on /v1/models"));
            }
            return old.IsSuccessStatusCode
                ? (true, $"{app} answers.")
                : (false, $"{app} answered /v1/models with HTTP {(int)old.StatusCode}.");
        }
        catch (UpstreamUnavailableException ex)
        {
            return (false, ex.Message);
        }
        catch (OperationCanceledException)
        {
            return (false, $"LM Studio at {BaseUrl} did not answer /v1/models in time.");
        }
    }

    private async Task<JsonDocument?> GetJsonAsync(string path, CancellationToken cancellationToken)
    {
        using var request = NewRequest(HttpMethod.Get, path);
        using var response = await SendAsync(request, cancellationToken);
        if (response.StatusCode is HttpStatusCode.NotFound) return null;
        if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            throw new UpstreamRefusedException(UpstreamAuth.Message(HostName, BaseUrl, apiKey is { Length: > 0 }, $"HTTP {(int)response.StatusCode} on {path}"));
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
                // What LM Studio applied, not what was asked: AutoFit's context (F22), REST's fixed 4 slots (F14).
                instances.Add(new LoadedInstance(i, Int(config, "context_length"), Int(config, "parallel"), Text(instance, "device_identifier")));
            }
        }
        IReadOnlyList<string>? variants = m.TryGetProperty("variants", out var v) && v.ValueKind == JsonValueKind.Array
            ? [.. v.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!)]
            : null;
        var quantization = m.TryGetProperty("quantization", out var q) && q.ValueKind == JsonValueKind.Object ? Text(q, "name") : Text(m, "quantization");
        return new CatalogModel(k, Text(m, "type") ?? "llm", instances,
            m.TryGetProperty("size_bytes", out var size) && size.TryGetInt64(out var bytes) ? bytes : 0, Int(m, "max_context_length"),
            variants, Text(m, "selected_variant"), quantization);
    }

    private static CatalogModel? ParseV0Model(JsonElement m)
    {
        if (!m.TryGetProperty("id", out var id) || id.GetString() is not { Length: > 0 } k) return null;
        var loaded = Text(m, "state") == "loaded";
        return new CatalogModel(k, Text(m, "type") ?? "llm", loaded ? [new LoadedInstance(k, Int(m, "loaded_context_length"))] : [], 0, Int(m, "max_context_length"),
            Quantization: Text(m, "quantization"));
    }

    private static string? Text(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static int? Int(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.TryGetInt32(out var n) ? n : null;
}
