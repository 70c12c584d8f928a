using System.Diagnostics.Metrics;
using LmsProxy.Models;

namespace LmsProxy.Diagnostics;

/// <summary>The proxy's meters. Model tags are limited to models LM Studio knows, so hostile names cannot grow the series.</summary>
public sealed class ProxyMetrics
{
    public const string MeterName = "LmsProxy";

    private readonly ModelRegistry _registry;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _holdDuration;
    private readonly UpDownCounter<long> _held;
    private readonly Counter<long> _loads;
    private readonly Histogram<double> _loadDuration;
    private readonly Counter<long> _notLoadedAbsorbed;
    private readonly Histogram<double> _upstreamDuration;

    public ProxyMetrics(IMeterFactory meterFactory, ModelRegistry registry)
    {
        _registry = registry;
        var meter = meterFactory.Create(MeterName);
        _requests = meter.CreateCounter<long>("lmsproxy.requests", description: "Proxied requests by model and outcome.");
        _holdDuration = meter.CreateHistogram<double>("lmsproxy.hold.duration", unit: "s", description: "Time requests were held while their model loaded.");
        _held = meter.CreateUpDownCounter<long>("lmsproxy.requests.held", description: "Requests held now.");
        _loads = meter.CreateCounter<long>("lmsproxy.model.loads", description: "Model loads by result.");
        _loadDuration = meter.CreateHistogram<double>("lmsproxy.model.load.duration", unit: "s", description: "How long model loads took.");
        _notLoadedAbsorbed = meter.CreateCounter<long>("lmsproxy.upstream.not_loaded", description: "\"Not loaded\" answers from LM Studio the proxy absorbed.");
        _upstreamDuration = meter.CreateHistogram<double>("lmsproxy.upstream.duration", unit: "s", description: "Time from forwarding to LM Studio's response headers.");
    }

    public void RequestEnded(string? model, string outcome) => _requests.Add(1, Model(model), new("outcome", outcome));

    /// <summary>Add and remove with the same tag: the model may become known to the catalog while it is held.</summary>
    public void HeldChanged(KeyValuePair<string, object?> modelTag, int delta) => _held.Add(delta, modelTag);

    public void HoldEnded(string model, string outcome, TimeSpan held) => _holdDuration.Record(held.TotalSeconds, Model(model), new("outcome", outcome));

    public void LoadEnded(string model, string result, TimeSpan duration)
    {
        _loads.Add(1, Model(model), new("result", result));
        _loadDuration.Record(duration.TotalSeconds, Model(model), new("result", result));
    }

    public void NotLoadedAbsorbed(string model) => _notLoadedAbsorbed.Add(1, Model(model));

    public void UpstreamResponded(TimeSpan elapsed) => _upstreamDuration.Record(elapsed.TotalSeconds);

    public KeyValuePair<string, object?> Model(string? model) =>
        new("model", model is not null && _registry.Catalog.Resolve(model) is { } known ? known.Key : "(none)");
}
