using System.Net;
using LmsProxy.Configuration;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace LmsProxy.Security;

/// <summary>
/// The addresses Kestrel listens on, read once they are bound: whether any is beyond loopback (who can reach the
/// proxy), and the host names among them (names the proxy answers to).
/// </summary>
internal sealed class ListenAddresses(IServer server)
{
    private Snapshot? _snapshot;

    private sealed record Snapshot(IReadOnlyList<string> Addresses, IReadOnlyList<string> Exposed, IReadOnlySet<string> Names);

    /// <summary>The addresses as Kestrel reports them (empty before start).</summary>
    public IReadOnlyList<string> All => Current?.Addresses ?? [];

    /// <summary>The addresses other machines may reach: wildcards, LAN addresses, names other than localhost.</summary>
    public IReadOnlyList<string> BeyondLoopback => Current?.Exposed ?? [];

    /// <summary>Loopback only: known, and none beyond it.</summary>
    public bool LoopbackOnly => Current is { Addresses.Count: > 0, Exposed.Count: 0 };

    /// <summary>Host names in the addresses (not IP literals), lower case.</summary>
    public IReadOnlySet<string> Names => Current?.Names ?? new HashSet<string>();

    /// <summary>
    /// The warning for a proxy that others can reach without a key, or null: without LmsProxy:ApiKeys, anyone who can
    /// connect can run inference and load and unload models.
    /// </summary>
    public string? ExposureWarning(LmsProxyOptions options) =>
        options.Access.ApiKeys.Count == 0 && BeyondLoopback.Count > 0
            ? $"LmsProxy listens on {string.Join(", ", BeyondLoopback)} without API keys: anyone who can reach this port can run models and load and unload models. Set LmsProxy:ApiKeys (README: API keys), or listen on localhost only."
            : null;

    private Snapshot? Current
    {
        get
        {
            if (_snapshot is { } known) return known;
            var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses.ToList() ?? [];
            if (addresses.Count == 0) return null; // not started yet: ask again later
            var exposed = new List<string>();
            var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var address in addresses)
            {
                var host = HostOf(address);
                if (host.Length == 0 || host is "*" or "+" || !IsLoopback(host)) exposed.Add(address);
                if (host.Length > 0 && host is not ("*" or "+") && Uri.CheckHostName(host) == UriHostNameType.Dns) names.Add(host.ToLowerInvariant());
            }
            return _snapshot = new Snapshot(addresses, exposed, names);
        }
    }

    private static string HostOf(string address)
    {
        // Kestrel reports "http://0.0.0.0:8080", "http://[::]:8080", "http://localhost:8080", and "http://+:8080" as given.
        var start = address.IndexOf("://", StringComparison.Ordinal) is var s and >= 0 ? s + 3 : 0;
        var rest = address[start..];
        if (rest.StartsWith('[')) return rest[..(rest.IndexOf(']') + 1)];
        var end = rest.IndexOfAny([':', '/']);
        return end < 0 ? rest : rest[..end];
    }

    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));
}
