namespace LmsProxy.Loading;

/// <summary>
/// What a user is told when LM Studio's "Require Authentication" refuses the proxy (addendum F16): the host by name,
/// whether a token was sent at all, and the setting that holds it. The error code is upstream_auth_failed, a 502:
/// the client did nothing wrong, the proxy's credentials for that host are missing or refused.
/// </summary>
internal static class UpstreamAuth
{
    public const string Code = "upstream_auth_failed";

    public static string Message(string hostName, Uri url, bool tokenSent, string how) =>
        $"LM Studio host '{hostName}' at {url} requires an API token and {(tokenSent ? "refused the proxy's token" : "the proxy has none for it")} ({how}). " +
        $"Set {SettingFor(hostName)} to a token from LM Studio (Developer → Server Settings → Require Authentication → Manage Tokens; " +
        "it looks like sk-lm-xxxxxxxx:xxxxxxxxxxxxxxxxxxxx). lms cannot send a token to a remote host, so such a host is loaded through REST.";

    /// <summary>The single-host setting for the host LmsProxy:Upstream makes ("default"), else the host's own.</summary>
    public static string SettingFor(string hostName) => hostName == "default"
        ? "LmsProxy:UpstreamApiKey (or LmsProxy:Hosts:default:ApiKey)"
        : $"LmsProxy:Hosts:{hostName}:ApiKey";

    /// <summary>LM Studio's 200 answer to a path it does not know, which it also gives for a missing or wrong token on /v1/* (F16).</summary>
    public static bool IsUnexpectedEndpoint(string body) => body.Contains("Unexpected endpoint or method", StringComparison.Ordinal);

    /// <summary>The same, on the UTF-8 bytes as they arrive (the warm path looks at every small 200 answer).</summary>
    public static bool IsUnexpectedEndpoint(ReadOnlySpan<byte> body) => body.IndexOf("Unexpected endpoint or method"u8) >= 0;
}
