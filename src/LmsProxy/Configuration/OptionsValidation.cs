using System.Globalization;
using LmsProxy.Models;

namespace LmsProxy.Configuration;

/// <summary>Checks a bound <see cref="LmsProxyOptions"/>; returns the problems as one-line sentences.</summary>
public static class OptionsValidation
{
    public static List<string> Validate(LmsProxyOptions o)
    {
        var errors = new List<string>();
        if (!o.Upstream.IsAbsoluteUri || (o.Upstream.Scheme != Uri.UriSchemeHttp && o.Upstream.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"LmsProxy:Upstream must be an absolute http:// or https:// URL (got '{o.Upstream}').");
        }
        else if (o.Upstream.AbsolutePath != "/")
        {
            errors.Add($"LmsProxy:Upstream must not have a path: clients' paths are appended as they are (got '{o.Upstream}').");
        }

        Positive(errors, "HoldTimeout", o.HoldTimeout);
        Positive(errors, "LoadTimeout", o.LoadTimeout);
        Positive(errors, "RefreshInterval", o.RefreshInterval);
        Positive(errors, "ActivityTimeout", o.ActivityTimeout);
        Positive(errors, "ConnectTimeout", o.ConnectTimeout);
        Positive(errors, "Lms:Timeout", o.Lms.Timeout);
        if (o.MaxHeldPerModel < 1) errors.Add($"LmsProxy:MaxHeldPerModel must be at least 1 (got {o.MaxHeldPerModel}).");
        if (o.MaxRequestBodyBytes < 1024) errors.Add($"LmsProxy:MaxRequestBodyBytes must be at least 1024 (got {o.MaxRequestBodyBytes}).");
        if (o.NotLoadedRetries is < 0 or > 10) errors.Add($"LmsProxy:NotLoadedRetries must be between 0 and 10 (got {o.NotLoadedRetries}).");

        if (o.ApiKeys.Any(k => string.IsNullOrWhiteSpace(k) || k.Length < 8)) errors.Add("LmsProxy:ApiKeys entries must be at least 8 characters.");
        foreach (var model in o.Preload)
        {
            if (ModelName.Problem(model) is { } p) errors.Add($"LmsProxy:Preload entry '{model}': {p}");
        }
        foreach (var (alias, target) in o.Aliases)
        {
            if (ModelName.Problem(alias) is { } p) errors.Add($"LmsProxy:Aliases key '{alias}': {p}");
            if (ModelName.Problem(target) is { } q) errors.Add($"LmsProxy:Aliases:{alias} target '{target}': {q}");
        }
        foreach (var (key, s) in o.Models)
        {
            if (ModelName.Problem(key) is { } p) errors.Add($"LmsProxy:Models key '{key}': {p}");
            if (s.ContextLength is < 1) errors.Add($"LmsProxy:Models:{key}:ContextLength must be positive.");
            if (s.Ttl is < 1) errors.Add($"LmsProxy:Models:{key}:Ttl must be at least 1 second.");
            if (s.Parallel is < 1) errors.Add($"LmsProxy:Models:{key}:Parallel must be at least 1.");
            if (s.Gpu is { } gpu && !IsGpuSetting(gpu)) errors.Add($"LmsProxy:Models:{key}:Gpu must be off, max or a number from 0 to 1 (got '{gpu}').");
        }
        return errors;
    }

    private static bool IsGpuSetting(string gpu) =>
        gpu is "off" or "max" ||
        (double.TryParse(gpu, NumberStyles.Float, CultureInfo.InvariantCulture, out var ratio) && ratio is >= 0 and <= 1);

    private static void Positive(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero) errors.Add($"LmsProxy:{name} must be a positive duration such as 00:00:30 (got {value}).");
    }
}
