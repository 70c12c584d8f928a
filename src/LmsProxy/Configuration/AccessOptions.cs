namespace LmsProxy.Configuration;

/// <summary>Who may use the proxy: API keys, the status page, browsers' origins and host names (keys directly under <c>LmsProxy</c>).</summary>
internal sealed class AccessOptions
{
    /// <summary>Inbound API keys; when any are set, every request but /healthz and /readyz must carry one.</summary>
    public List<string> ApiKeys { get; set; } = [];

    /// <summary>Named keys with a role, a model list, a priority and limits (see Keys/). ApiKeys entries join them as inference keys.</summary>
    public Dictionary<string, Keys.KeyOptions> Keys { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>With ApiKeys set: whether /, /status and /metrics stay open without a key.</summary>
    public bool OpenStatus { get; set; }

    /// <summary>With ApiKeys set: whether the client's Authorization / x-api-key header is forwarded to LM Studio.</summary>
    public bool ForwardClientKey { get; set; }

    /// <summary>
    /// Origins (scheme://host:port) of web pages allowed to send requests that act: inference, loads, operator
    /// actions, WebSocket upgrades. "*": any. Pages served by the proxy itself, and clients that send no Origin, need none.
    /// </summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>
    /// Host names the proxy answers to besides IP addresses, loopback names, the machine's name and the names it listens
    /// on (and, when it listens beyond loopback, names public DNS cannot give). "*.example.lan": subdomains; "*": any.
    /// </summary>
    public List<string> AllowedHosts { get; set; } = [];
}
