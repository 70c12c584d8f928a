using System.Security.Claims;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Keys;

/// <summary>
/// A key in force, made from its settings: the secret's SHA-256 (never the secret), role, models, priority and limits.
/// Its principal is made once and set as the request's User, so knowing the caller costs a request nothing.
/// </summary>
internal sealed class ApiKey
{
    public ApiKey(string name, byte[] digest, KeyOptions options)
    {
        Name = name;
        Digest = digest;
        Options = options;
        Principal = new ClaimsPrincipal(new KeyIdentity(this));
    }

    /// <summary>The name operators see (in records, usage, logs, metrics); the secret is never shown.</summary>
    public string Name { get; }

    internal byte[] Digest { get; }

    public KeyOptions Options { get; }

    public KeyRole Role => Options.Role;

    public KeyPriority Priority => Options.Priority;

    public bool IsOperator => Options.Role == KeyRole.Operator;

    /// <summary>No model list and no limit: the SDK channel (where the proxy cannot see the model) is open to it.</summary>
    public bool Unrestricted => Options.Models.Count == 0 && Options.MaxConcurrent == 0 && Options.RequestsPerMinute == 0
        && Options.TokensPerDay == 0 && Options.GpuSecondsPerDay == 0;

    internal ClaimsPrincipal Principal { get; }

    /// <summary>
    /// Whether the key may use the model a client named: its list names the name sent, the alias's target, or the model
    /// key it resolved to (each exactly or by a glob).
    /// </summary>
    public bool MayUse(string requested, string? resolvedKey, LmsProxyOptions options)
    {
        var models = Options.Models;
        if (models.Count == 0) return true;
        var target = options.Loading.ResolveAlias(requested);
        foreach (var pattern in models)
        {
            if (ModelName.Matches(pattern, requested) || ModelName.Matches(pattern, target) || (resolvedKey is not null && ModelName.Matches(pattern, resolvedKey))) return true;
        }
        return false;
    }

    /// <summary>Whether the key may use a model a list names (an id, perhaps an alias), resolved in <paramref name="catalog"/>.</summary>
    public bool MayUse(string id, ModelCatalog catalog, LmsProxyOptions options) =>
        Options.Models.Count == 0 || MayUse(id, catalog.Resolve(options.Loading.ResolveAlias(id))?.Key, options);

    /// <summary>
    /// The request's caller, or null when keys are off (or the path is open). Read through the feature: HttpContext.User
    /// would make an empty principal for every request without a key.
    /// </summary>
    public static ApiKey? Of(HttpContext context) =>
        (context.Features.Get<Microsoft.AspNetCore.Http.Features.Authentication.IHttpAuthenticationFeature>()?.User?.Identity as KeyIdentity)?.Key;

    private sealed class KeyIdentity(ApiKey key) : ClaimsIdentity([new Claim(ClaimTypes.Name, key.Name)], "ApiKey")
    {
        public ApiKey Key { get; } = key;
    }
}
