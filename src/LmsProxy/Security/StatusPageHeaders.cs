using System.Security.Cryptography;
using System.Text;

namespace LmsProxy.Security;

/// <summary>
/// The status page has buttons, so no other site may frame it (clickjacking): X-Frame-Options for older browsers,
/// frame-ancestors for the rest. Its Content-Security-Policy lets it run only its own inline script and style (by
/// hash, computed from the page itself so an edit cannot forget it) and fetch only from the proxy.
/// </summary>
internal static class StatusPageHeaders
{
    public static readonly string ContentSecurityPolicy = PolicyFor(Diagnostics.StatusPage.Html);

    public static void Apply(HttpResponse response)
    {
        response.Headers.XFrameOptions = "DENY";
        response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers["Referrer-Policy"] = "no-referrer";
    }

    private static string PolicyFor(string html) =>
        $"default-src 'none'; script-src {HashOf(html, "script")}; style-src {HashOf(html, "style")}; connect-src 'self'; img-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    /// <summary>The CSP hashes of the page's inline elements of that tag (each one's text exactly, between the tags).</summary>
    private static string HashOf(string html, string tag)
    {
        var (open, close) = ($"<{tag}>", $"</{tag}>");
        var hashes = new List<string>();
        for (var start = html.IndexOf(open, StringComparison.Ordinal); start >= 0; start = html.IndexOf(open, start + 1, StringComparison.Ordinal))
        {
            var end = html.IndexOf(close, start, StringComparison.Ordinal);
            if (end < 0) break;
            var text = html[(start + open.Length)..end];
            hashes.Add($"'sha256-{Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(text)))}'");
        }
        if (hashes.Count == 0) throw new InvalidOperationException($"The status page has no <{tag}> element for its Content-Security-Policy.");
        return string.Join(' ', hashes);
    }
}
