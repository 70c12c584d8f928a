using System.Net;
using System.Net.Sockets;
using LmsProxy.Configuration;

namespace LmsProxy.Security;

/// <summary>
/// DNS rebinding: a page at attacker.example whose name is later pointed at the proxy's address is same-origin with
/// the proxy, and can read /status and press its buttons. The attack needs a name the attacker controls in public
/// DNS, so the proxy answers only to names that cannot come from there:
/// IP literals; localhost and *.localhost; the machine's own name; the names in its listen addresses;
/// LmsProxy:AllowedHosts; and, when it listens beyond loopback (0.0.0.0 in Docker or on a LAN, where it cannot know
/// every name clients use), single-label names (gpu-box, a Docker service) and the private-use suffixes .local,
/// .lan, .home, .internal and .home.arpa. Bound to loopback only, those last ones are refused: there a local name
/// spoofed on the LAN (mDNS, LLMNR) would be the only way in.
/// </summary>
internal sealed class HostHeaderGuard(ListenAddresses listening)
{
    private static readonly string[] PrivateSuffixes = [".localhost", ".local", ".lan", ".home", ".internal", ".home.arpa"];

    private volatile Rules? _rules;
    private volatile Accepted? _last;

    private sealed record Rules(LmsProxyOptions Options, HashSet<string> Exact, string[] Suffixes, bool Any, bool LocalNames);

    private sealed record Accepted(LmsProxyOptions Options, string Header);

    /// <summary>Null when the proxy answers to the request's Host; otherwise the host name it refuses.</summary>
    public string? Refused(HttpRequest request, LmsProxyOptions options)
    {
        var header = request.Host.Value;
        // No Host at all (HTTP/1.0) is no browser; the same Host as the last request is the common case.
        if (string.IsNullOrEmpty(header) || (_last is { } last && ReferenceEquals(last.Options, options) && last.Header == header)) return null;
        var host = NameOf(header);
        if (!Allows(host, RulesFor(options))) return host;
        if (listening.All.Count > 0) _last = new Accepted(options, header);
        return null;
    }

    /// <summary>Whether an AllowedHosts entry is usable: a host name (no scheme, port or path), *.suffix, or *.</summary>
    public static bool IsValidPattern(string pattern)
    {
        if (pattern == "*") return true;
        var name = pattern.StartsWith("*.", StringComparison.Ordinal) ? pattern[2..] : pattern;
        return name.Length > 0 && Uri.CheckHostName(name) == UriHostNameType.Dns;
    }

    private static bool Allows(string host, Rules rules)
    {
        if (host.Length == 0 || rules.Any) return true;
        if (IsIpLiteral(host)) return true;
        if (host == "localhost" || host.EndsWith(".localhost", StringComparison.Ordinal)) return true;
        if (rules.Exact.Contains(host)) return true;
        foreach (var suffix in rules.Suffixes)
        {
            if (host.EndsWith(suffix, StringComparison.Ordinal)) return true;
        }
        return rules.LocalNames && (!host.Contains('.') || PrivateSuffixes.Any(s => host.EndsWith(s, StringComparison.Ordinal)));
    }

    /// <summary>The host without port and trailing dot, lower case.</summary>
    private static string NameOf(string header)
    {
        string host;
        if (header.StartsWith('['))
        {
            var end = header.IndexOf(']');
            host = end < 0 ? header : header[..(end + 1)];
        }
        else
        {
            var colon = header.LastIndexOf(':');
            host = colon < 0 ? header : header[..colon];
        }
        return host.TrimEnd('.').ToLowerInvariant();
    }

    /// <summary>Only the canonical forms a browser sends (it rewrites 0x7f.1 and the like): no name can look like one.</summary>
    private static bool IsIpLiteral(string host)
    {
        if (host.StartsWith('[') && host.EndsWith(']')) return IPAddress.TryParse(host[1..^1], out var v6) && v6.AddressFamily == AddressFamily.InterNetworkV6;
        return IPAddress.TryParse(host, out var v4) && v4.AddressFamily == AddressFamily.InterNetwork && v4.ToString() == host;
    }

    private Rules RulesFor(LmsProxyOptions options)
    {
        if (_rules is { } known && ReferenceEquals(known.Options, options)) return known;
        var exact = new HashSet<string>(StringComparer.Ordinal);
        var machine = Environment.MachineName.ToLowerInvariant();
        exact.Add(machine);
        exact.Add(machine + ".local");
        var domain = MachineDomain();
        if (domain.Length > 0) exact.Add(machine + "." + domain.TrimEnd('.').ToLowerInvariant());
        exact.UnionWith(listening.Names);
        var suffixes = new List<string>();
        foreach (var entry in options.Access.AllowedHosts)
        {
            var pattern = entry.Trim().TrimEnd('.').ToLowerInvariant();
            if (pattern.StartsWith("*.", StringComparison.Ordinal)) suffixes.Add(pattern[1..]);
            else exact.Add(pattern);
        }
        var rules = new Rules(options, exact, [.. suffixes], options.Access.AllowedHosts.Contains("*"), !listening.LoopbackOnly);
        // Listen addresses are known only once the server has started; until then the rules are not kept.
        if (listening.All.Count > 0) _rules = rules;
        return rules;
    }

    private static string MachineDomain()
    {
        try
        {
            return System.Net.NetworkInformation.IPGlobalProperties.GetIPGlobalProperties().DomainName ?? "";
        }
        catch (Exception ex) when (ex is System.Net.NetworkInformation.NetworkInformationException or PlatformNotSupportedException)
        {
            return "";
        }
    }
}
