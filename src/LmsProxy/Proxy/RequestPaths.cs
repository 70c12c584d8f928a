namespace LmsProxy.Proxy;

/// <summary>What the proxy does with a request, by its method and path.</summary>
internal enum RequestKind
{
    /// <summary>An inference request: its JSON body names a model that must be loaded first.</summary>
    Inference,

    /// <summary>GET /v1/models: LM Studio's list, completed with what the proxy can serve.</summary>
    ModelList,

    /// <summary>GET /v1/models/{id}: answered by the proxy (LM Studio has no such endpoint).</summary>
    ModelLookup,

    /// <summary>POST /v1/messages/count_tokens: answered by the proxy (LM Studio does not implement it).</summary>
    CountTokens,

    /// <summary>A client's own POST /api/v1/models/load or /unload: sent to the host that has or should have the model.</summary>
    ModelControl,

    /// <summary>Another path LM Studio serves: passed through.</summary>
    Known,

    /// <summary>A path LM Studio may not know (its 200 "Unexpected endpoint" is unmasked).</summary>
    Unknown,
}

/// <summary>The one place that knows LM Studio's paths: which carry a model, which the proxy answers, which are known.</summary>
internal static class RequestPaths
{
    // Load/unload/download name a model too, but those are requests *about* loading: not held for a load.
    private static readonly HashSet<string> InferencePaths = new(StringComparer.OrdinalIgnoreCase)
    {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
        "/api/v0/chat/completions", "/api/v0/completions", "/api/v0/embeddings", "/api/v1/chat",
        // F20: they take a loaded decision model's identifier; no streaming.
        "/v1/decisions", "/v1/systemone",
    };

    private static readonly HashSet<string> KnownPaths = new(StringComparer.OrdinalIgnoreCase)
    {
        "/v1/models", "/api/v0/models", "/api/v1/models", "/api/v1/models/download", "/lmstudio-greeting",
    };

    /// <summary>The WebSocket namespaces LM Studio's SDKs and `lms --host` open on the server's port.</summary>
    public static readonly string[] WebSocketNamespaces = ["llm", "embedding", "system", "diagnostics", "files", "repository", "runtime", "plugins"];

    /// <summary>
    /// The paths forwarded to LM Studio, in any case: /v1 and /api with everything under them, /lmstudio-greeting,
    /// and the WebSocket namespaces with everything under them. Anything else is the proxy's own, or a 404.
    /// </summary>
    public static bool IsForwarded(PathString path)
    {
        var value = path.Value;
        if (string.IsNullOrEmpty(value) || value[0] != '/') return false;
        var rest = value.AsSpan(1);
        var slash = rest.IndexOf('/');
        var first = slash < 0 ? rest : rest[..slash];
        if (first.Equals("v1", StringComparison.OrdinalIgnoreCase) || first.Equals("api", StringComparison.OrdinalIgnoreCase)) return true;
        if (first.Equals("lmstudio-greeting", StringComparison.OrdinalIgnoreCase)) return slash < 0 || slash == rest.Length - 1;
        foreach (var name in WebSocketNamespaces)
        {
            if (first.Equals(name, StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }

    /// <summary>A POST to an inference path: its body names the model, and it is held for a load.</summary>
    public static bool IsInference(HttpRequest request) => HttpMethods.IsPost(request.Method) && InferencePaths.Contains(request.Path.Value!.TrimEnd('/'));

    public static RequestKind Classify(HttpRequest request)
    {
        var path = request.Path.Value!.TrimEnd('/');
        if (HttpMethods.IsPost(request.Method))
        {
            if (InferencePaths.Contains(path)) return RequestKind.Inference;
            if (path.Equals("/v1/messages/count_tokens", StringComparison.OrdinalIgnoreCase)) return RequestKind.CountTokens;
            if (path.Equals("/api/v1/models/load", StringComparison.OrdinalIgnoreCase) || path.Equals("/api/v1/models/unload", StringComparison.OrdinalIgnoreCase)) return RequestKind.ModelControl;
        }
        else if (HttpMethods.IsGet(request.Method))
        {
            if (path.Equals("/v1/models", StringComparison.OrdinalIgnoreCase)) return RequestKind.ModelList;
            if (path.StartsWith("/v1/models/", StringComparison.OrdinalIgnoreCase)) return RequestKind.ModelLookup;
        }
        if (KnownPaths.Contains(path) || InferencePaths.Contains(path)) return RequestKind.Known;
        return path.StartsWith("/api/v0/models/", StringComparison.OrdinalIgnoreCase)
            || path.StartsWith("/api/v1/models/download/status/", StringComparison.OrdinalIgnoreCase)
            ? RequestKind.Known
            : RequestKind.Unknown;
    }

    /// <summary>Whether answers on this path carry a response id that a later turn names (previous_response_id).</summary>
    public static byte[]? ResponseIdField(HttpRequest request)
    {
        var path = request.Path.Value!.TrimEnd('/');
        if (path.Equals("/v1/responses", StringComparison.OrdinalIgnoreCase)) return "\"id\""u8.ToArray();
        if (path.Equals("/api/v1/chat", StringComparison.OrdinalIgnoreCase)) return "\"response_id\""u8.ToArray();
        return null;
    }
}
