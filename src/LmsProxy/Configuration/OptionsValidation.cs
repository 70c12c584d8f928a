using System.Globalization;
using LmsProxy.Models;

namespace LmsProxy.Configuration;

/// <summary>Checks a bound <see cref="LmsProxyOptions"/>; returns the problems as one-line sentences.</summary>
internal static class OptionsValidation
{
    public static List<string> Validate(LmsProxyOptions o)
    {
        var errors = new List<string>();
        if (o.Hosts.Count == 0)
        {
            CheckUrl(errors, "LmsProxy:Upstream", o.Upstream);
        }
        var urls = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, host) in o.Hosts)
        {
            var prefix = $"LmsProxy:Hosts:{name}";
            if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                errors.Add($"{prefix}: a host name may use letters, digits, '-', '_' and '.' (at most 64).");
            }
            if (host.Url is null)
            {
                errors.Add($"{prefix}:Url is required (for example http://192.168.1.20:1234).");
                continue;
            }
            CheckUrl(errors, prefix + ":Url", host.Url);
            if (urls.TryGetValue(host.Url.GetLeftPart(UriPartial.Authority), out var other))
            {
                errors.Add($"{prefix}:Url is the same LM Studio as LmsProxy:Hosts:{other}:Url ({host.Url}).");
            }
            urls[host.Url.GetLeftPart(UriPartial.Authority)] = name;
            if (host.Capacity is { } capacity) CheckCapacity(errors, prefix + ":Capacity", capacity);
            foreach (var pattern in host.Models)
            {
                if (string.IsNullOrWhiteSpace(pattern)) errors.Add($"{prefix}:Models has an empty entry.");
            }
        }
        CheckCapacity(errors, "LmsProxy:Capacity", o.Capacity);

        Positive(errors, "HoldTimeout", o.Holding.HoldTimeout);
        Positive(errors, "LoadTimeout", o.Loading.LoadTimeout);
        Positive(errors, "RefreshInterval", o.Loading.RefreshInterval);
        Positive(errors, "HealthCheckInterval", o.Loading.HealthCheckInterval);
        Positive(errors, "ActivityTimeout", o.Forwarding.ActivityTimeout);
        Positive(errors, "ConnectTimeout", o.Forwarding.ConnectTimeout);
        Positive(errors, "ApiTimeout", o.Loading.ApiTimeout);
        Positive(errors, "KeepAliveAfter", o.Holding.KeepAliveAfter);
        Positive(errors, "KeepAliveInterval", o.Holding.KeepAliveInterval);
        if (o.Loading.LoadStallTimeout < TimeSpan.Zero) errors.Add($"LmsProxy:LoadStallTimeout must not be negative (got {o.Loading.LoadStallTimeout}).");
        Positive(errors, "Lms:Timeout", o.Loading.Lms.Timeout);
        if (o.Holding.MaxHeldPerModel < 1) errors.Add($"LmsProxy:MaxHeldPerModel must be at least 1 (got {o.Holding.MaxHeldPerModel}).");
        if (o.Forwarding.MaxRequestBodyBytes < 1024) errors.Add($"LmsProxy:MaxRequestBodyBytes must be at least 1024 (got {o.Forwarding.MaxRequestBodyBytes}).");

        if (o.Holding.MaxHeldBodyBytes < o.Forwarding.MaxRequestBodyBytes)
        {
            errors.Add($"LmsProxy:MaxHeldBodyBytes must be at least LmsProxy:MaxRequestBodyBytes ({o.Forwarding.MaxRequestBodyBytes}), or the largest body could never be held (got {o.Holding.MaxHeldBodyBytes}).");
        }
        foreach (var origin in o.Access.AllowedOrigins)
        {
            if (Security.CrossSiteGuard.NormalizeOrigin(origin) is null) errors.Add($"LmsProxy:AllowedOrigins entry '{origin}' must be an origin such as http://192.168.1.30:3000 (scheme, host and port, no path), or *.");
        }
        foreach (var host in o.Access.AllowedHosts)
        {
            if (!Security.HostHeaderGuard.IsValidPattern(host)) errors.Add($"LmsProxy:AllowedHosts entry '{host}' must be a host name without scheme or port (gpu-box.example.com), *.example.com, or *.");
        }

        if (o.Access.ApiKeys.Any(k => string.IsNullOrWhiteSpace(k) || k.Length < 8)) errors.Add("LmsProxy:ApiKeys entries must be at least 8 characters.");
        Keys.KeyValidation.Validate(o, errors);
        foreach (var model in o.Loading.Preload)
        {
            if (ModelName.Problem(model) is { } p) errors.Add($"LmsProxy:Preload entry '{model}': {p}");
        }
        foreach (var (alias, target) in o.Loading.Aliases)
        {
            if (ModelName.Problem(alias) is { } p) errors.Add($"LmsProxy:Aliases key '{alias}': {p}");
            if (ModelName.Problem(target) is { } q) errors.Add($"LmsProxy:Aliases:{alias} target '{target}': {q}");
        }
        foreach (var (key, s) in o.Loading.Models)
        {
            if (ModelName.Problem(key) is { } p) errors.Add($"LmsProxy:Models key '{key}': {p}");
            if (s.ContextLength is < 1) errors.Add($"LmsProxy:Models:{key}:ContextLength must be positive.");
            if (s.Ttl is < 1) errors.Add($"LmsProxy:Models:{key}:Ttl must be at least 1 second.");
            if (s.Parallel is < 1) errors.Add($"LmsProxy:Models:{key}:Parallel must be at least 1.");
            if (s.Gpu is { } gpu && !IsGpuSetting(gpu)) errors.Add($"LmsProxy:Models:{key}:Gpu must be off, max or a number from 0 to 1 (got '{gpu}').");
        }
        return errors;
    }

    private static void CheckUrl(List<string> errors, string key, Uri url)
    {
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"{key} must be an absolute http:// or https:// URL (got '{url}').");
        }
        else if (url.AbsolutePath != "/")
        {
            errors.Add($"{key} must not have a path: clients' paths are appended as they are (got '{url}').");
        }
    }

    private static void CheckCapacity(List<string> errors, string key, CapacityOptions c)
    {
        if (c.MaxLoadedModels < 0) errors.Add($"{key}:MaxLoadedModels must be 0 (no limit) or more (got {c.MaxLoadedModels}).");
        if (c.MemoryBudgetBytes < 0) errors.Add($"{key}:MemoryBudgetBytes must be 0 (unknown) or more (got {c.MemoryBudgetBytes}).");
        if (c.IdleUnloadAfter < TimeSpan.Zero) errors.Add($"{key}:IdleUnloadAfter must be 00:00:00 (never) or more (got {c.IdleUnloadAfter}).");
        if (!string.Equals(c.MaxSwapWait, "auto", StringComparison.OrdinalIgnoreCase) && c.SwapWaitBound is not { Ticks: >= 0 })
        {
            errors.Add($"{key}:MaxSwapWait must be auto or a duration of 00:00:00 or more (got '{c.MaxSwapWait}').");
        }
        if (c.SpillAt < 0) errors.Add($"{key}:SpillAt must be 0 (the instance's parallel) or more (got {c.SpillAt}).");
    }

    private static bool IsGpuSetting(string gpu) =>
        gpu is "off" or "max" ||
        (double.TryParse(gpu, NumberStyles.Float, CultureInfo.InvariantCulture, out var ratio) && ratio is >= 0 and <= 1);

    private static void Positive(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero) errors.Add($"LmsProxy:{name} must be a positive duration such as 00:00:30 (got {value}).");
    }
}
