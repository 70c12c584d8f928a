using System.Globalization;

namespace LmsProxy.Keys;

/// <summary>Checks LmsProxy:Keys; each problem is one sentence naming the setting (part of OptionsValidation).</summary>
internal static class KeyValidation
{
    public const int MinimumKeyLength = 16;

    public static void Validate(Configuration.LmsProxyOptions options, List<string> errors)
    {
        var digests = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, key) in options.Access.Keys)
        {
            var prefix = $"LmsProxy:Keys:{name}";
            if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '@'))
            {
                errors.Add($"{prefix}: a key's name may use letters, digits, '-', '_', '.' and '@' (at most 64); it is what logs and /usage show.");
            }
            var hasKey = !string.IsNullOrEmpty(key.Key);
            var hasHash = !string.IsNullOrEmpty(key.KeyHash);
            if (hasKey == hasHash)
            {
                errors.Add($"{prefix}: give exactly one of Key (the secret) or KeyHash (its SHA-256 in hex); it has {(hasKey ? "both" : "neither")}.");
                continue;
            }
            if (hasKey && (key.Key!.Length < MinimumKeyLength || key.Key.Trim().Length != key.Key.Length))
            {
                errors.Add($"{prefix}:Key must be at least {MinimumKeyLength} characters without leading or trailing spaces (for example from `openssl rand -hex 24`).");
                continue;
            }
            if (hasHash && (key.KeyHash!.Length != 64 || !key.KeyHash.All(char.IsAsciiHexDigit)))
            {
                errors.Add($"{prefix}:KeyHash must be the SHA-256 of the key as 64 hex digits (`printf %s \"$KEY\" | sha256sum`), got {key.KeyHash.Length} characters.");
                continue;
            }
            var digest = Convert.ToHexString(KeyRegistry.DigestOf(key));
            if (digests.TryGetValue(digest, out var other)) errors.Add($"{prefix} has the same secret as LmsProxy:Keys:{other}: each person or tool needs its own key.");
            digests[digest] = name;
            foreach (var model in key.Models)
            {
                if (Models.ModelName.Problem(model) is { } problem) errors.Add($"{prefix}:Models entry '{model}': {problem}");
            }
            if (key.MaxConcurrent < 0) errors.Add($"{prefix}:MaxConcurrent must be 0 (no limit) or more (got {key.MaxConcurrent}).");
            if (key.RequestsPerMinute < 0) errors.Add($"{prefix}:RequestsPerMinute must be 0 (no limit) or more (got {key.RequestsPerMinute}).");
            if (key.TokensPerDay < 0) errors.Add($"{prefix}:TokensPerDay must be 0 (no limit) or more (got {key.TokensPerDay}).");
            if (key.GpuSecondsPerDay < 0 || !double.IsFinite(key.GpuSecondsPerDay))
            {
                errors.Add($"{prefix}:GpuSecondsPerDay must be 0 (no limit) or more (got {key.GpuSecondsPerDay.ToString(CultureInfo.InvariantCulture)}).");
            }
        }
        for (var i = 0; i < options.Access.ApiKeys.Count; i++)
        {
            var digest = Convert.ToHexString(KeyRegistry.Sha256(options.Access.ApiKeys[i]));
            if (digests.TryGetValue(digest, out var other)) errors.Add($"LmsProxy:ApiKeys:{i} is also LmsProxy:Keys:{other}: keep it in one place (Keys gives it a name and limits).");
        }
    }
}
