namespace LmsProxy.Activity;

/// <summary>Which request and response bodies the record keeps.</summary>
internal enum CaptureMode
{
    None,
    Failed,
    All,
}

/// <summary>The <c>LmsProxy:Activity</c> section, read once at start.</summary>
internal sealed class ActivityOptions
{
    public const string SectionName = "LmsProxy:Activity";

    /// <summary>The record of every request (on by default; off only to measure what it costs).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Bodies kept with the record: none, failed (status 400 and up, errors, cancels) or all.</summary>
    public CaptureMode Capture { get; set; } = CaptureMode.None;

    /// <summary>Bytes kept of each captured body.</summary>
    public int CaptureLimitBytes { get; set; } = 16 * 1024;

    /// <summary>Finished records kept in memory (the store keeps the rest).</summary>
    public int Recent { get; set; } = 1000;
}
