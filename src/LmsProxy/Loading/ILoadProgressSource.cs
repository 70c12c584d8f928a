namespace LmsProxy.Loading;

/// <summary>A loader that sees a load's real progress while it runs (lms prints a percentage since 2026-05, addendum F1).</summary>
internal interface ILoadProgressSource
{
    /// <summary>Model key and progress 0..1, as often as the loader learns it (lms: every spinner frame, about 80 ms).</summary>
    event Action<string, double>? LoadProgress;
}
