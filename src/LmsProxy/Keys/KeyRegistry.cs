using System.Security.Cryptography;
using System.Text;
using LmsProxy.Configuration;

namespace LmsProxy.Keys;

/// <summary>
/// The keys in force: LmsProxy:Keys, and each LmsProxy:ApiKeys entry as an inference key with no limits (named
/// "ApiKeys:0", "ApiKeys:1", ...: its place in the list, nothing of the secret). Rebuilt when the settings change.
/// A presented key is hashed and compared with every known digest in constant time (no early exit).
/// </summary>
internal sealed class KeyRegistry
{
    private volatile Built _built = new(null!, []);

    private sealed record Built(LmsProxyOptions Options, ApiKey[] Keys);

    /// <summary>Whether any key is configured: then every request but the open paths needs one.</summary>
    public static bool Enabled(LmsProxyOptions options) => options.Access.ApiKeys.Count > 0 || options.Access.Keys.Count > 0;

    public IReadOnlyList<ApiKey> All(LmsProxyOptions options) => For(options).Keys;

    public ApiKey? Find(string presented, LmsProxyOptions options)
    {
        var keys = For(options).Keys;
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(presented), digest); // into the stack: the one hash per request
        ApiKey? match = null;
        foreach (var key in keys)
        {
            // Every digest is compared, so the time taken says nothing about which key came close.
            if (CryptographicOperations.FixedTimeEquals(digest, key.Digest)) match ??= key;
        }
        return match;
    }

    public ApiKey? Named(string name, LmsProxyOptions options) =>
        Array.Find(For(options).Keys, k => string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase));

    private Built For(LmsProxyOptions options)
    {
        var built = _built;
        if (ReferenceEquals(built.Options, options)) return built;
        var keys = new List<ApiKey>();
        foreach (var (name, key) in options.Access.Keys.OrderBy(k => k.Key, StringComparer.Ordinal))
        {
            keys.Add(new ApiKey(name, DigestOf(key), key));
        }
        for (var i = 0; i < options.Access.ApiKeys.Count; i++)
        {
            keys.Add(new ApiKey($"ApiKeys:{i}", Sha256(options.Access.ApiKeys[i]), new KeyOptions()));
        }
        return _built = new Built(options, [.. keys]);
    }

    /// <summary>The digest a key's settings give (validation has checked there is exactly one well-formed source).</summary>
    internal static byte[] DigestOf(KeyOptions key) =>
        key.Key is { Length: > 0 } secret ? Sha256(secret) : Convert.FromHexString(key.KeyHash!);

    /// <summary>The hex SHA-256 a KeyHash setting holds for <paramref name="secret"/> (README: how to make one).</summary>
    public static string HashOf(string secret) => Convert.ToHexStringLower(Sha256(secret));

    internal static byte[] Sha256(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));
}
