namespace LmsProxy.Configuration;

/// <summary>How requests travel to LM Studio: time limits and the largest body (keys directly under <c>LmsProxy</c>).</summary>
internal sealed class ForwardingOptions
{
    /// <summary>Longest LM Studio may stay silent on a forwarded request (long prompt processing counts).</summary>
    public TimeSpan ActivityTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Longest the proxy waits to open a connection to LM Studio.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;
}
