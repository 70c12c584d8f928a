using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace LmsProxy.Diagnostics;

/// <summary>
/// The proxy's meters. The warm path costs one interlocked increment: request counts live in plain counters that
/// the exporter reads when scraped. Model labels are limited to models some host lists, so hostile names cannot
/// grow the series; the caller passes "(none)" for anything else.
/// </summary>
internal sealed class ProxyMetrics
{
    public const string MeterName = "LmsProxy";
    public const string NoModel = "(none)";

    private readonly ConcurrentDictionary<(string Model, string Host, string Outcome), StrongBox<long>> _requests = new();
    private readonly Histogram<double> _holdDuration;
    private readonly Counter<long> _loads;
    private readonly Histogram<double> _loadDuration;
    private readonly Counter<long> _unloads;
    private readonly Counter<long> _swaps;
    private readonly Counter<long> _notLoadedAbsorbed;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Histogram<double> _queueTime;
    // Token counts per model, read when scraped like the request counts (two interlocked adds per request, no listener call).
    private readonly ConcurrentDictionary<string, TokenCounts> _tokens = new();
    private TokenCounts? _recentTokens;

    public ProxyMetrics(IMeterFactory meterFactory)
    {
        Meter = meterFactory.Create(MeterName);
        Meter.CreateObservableCounter("lmsproxy.requests", ObserveRequests, description: "Proxied requests by model, host and outcome.");
        _holdDuration = Meter.CreateHistogram<double>("lmsproxy.hold.duration", unit: "s", description: "Time requests were held while their model loaded or waited for room.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300] });
        _loads = Meter.CreateCounter<long>("lmsproxy.model.loads", description: "Model loads by host and result.");
        _loadDuration = Meter.CreateHistogram<double>("lmsproxy.model.load.duration", unit: "s", description: "How long model loads took.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300] });
        _unloads = Meter.CreateCounter<long>("lmsproxy.model.unloads", description: "Model unloads by host and reason (capacity, refusal, idle, operator).");
        _swaps = Meter.CreateCounter<long>("lmsproxy.swaps", description: "Loads that first unloaded other models, by host.");
        _notLoadedAbsorbed = Meter.CreateCounter<long>("lmsproxy.upstream.not_loaded", description: "\"Not loaded\" answers from LM Studio the proxy absorbed.");
        _timeToFirstToken = Meter.CreateHistogram<double>("lmsproxy.request.time_to_first_token", unit: "s", description: "From a request's arrival to its first token (a stream's first content event, a whole body's first byte), by model and host.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] });
        _queueTime = Meter.CreateHistogram<double>("lmsproxy.request.queue_time", unit: "s", description: "Time a request waited in the proxy (room, a load, a slot), by model and host.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300] });
        Meter.CreateObservableCounter("lmsproxy.tokens", ObserveTokens, description: "Tokens by model and kind (prompt, completion), as LM Studio reported them or as counted from a stream.");
    }

    /// <summary>For gauges that read the scheduler's state (registered by the scheduler).</summary>
    public Meter Meter { get; }

    /// <summary>The counter one (model, host, outcome) increments; callers on the warm path keep it.</summary>
    public StrongBox<long> RequestCounter(string model, string host, string outcome) => _requests.GetOrAdd((model, host, outcome), static _ => new StrongBox<long>());

    public void RequestEnded(string model, string host, string outcome) => Interlocked.Increment(ref RequestCounter(model, host, outcome).Value);

    public void HoldEnded(string model, string outcome, TimeSpan held) => _holdDuration.Record(held.TotalSeconds, new("model", model), new("outcome", outcome));

    public void LoadEnded(string model, string host, string result, TimeSpan duration)
    {
        _loads.Add(1, new("model", model), new("host", host), new("result", result));
        _loadDuration.Record(duration.TotalSeconds, new("model", model), new("host", host), new("result", result));
    }

    public void Unloaded(string model, string host, string reason) => _unloads.Add(1, new("model", model), new("host", host), new("reason", reason));

    public void Swapped(string host) => _swaps.Add(1, new KeyValuePair<string, object?>("host", host));

    public void NotLoadedAbsorbed(string model, string host) => _notLoadedAbsorbed.Add(1, new("model", model), new("host", host));

    /// <summary>A finished request's activity record: its time to first token, its wait, its tokens.</summary>
    public void RequestRecorded(string model, string host, long heldMs, long? ttftMs, long? promptTokens, long? completionTokens)
    {
        _queueTime.Record(heldMs / 1000.0, new("model", model), new("host", host));
        if (ttftMs is { } ttft) _timeToFirstToken.Record(ttft / 1000.0, new("model", model), new("host", host));
        if (promptTokens is not > 0 && completionTokens is not > 0) return;
        // The model's counts used last, found again by reference (the record passes the catalog's own string).
        var counts = _recentTokens is { } recent && ReferenceEquals(recent.Model, model) ? recent : _recentTokens = _tokens.GetOrAdd(model, static m => new TokenCounts(m));
        if (promptTokens is > 0) Interlocked.Add(ref counts.Prompt, promptTokens.Value);
        if (completionTokens is > 0) Interlocked.Add(ref counts.Completion, completionTokens.Value);
    }

    private IEnumerable<Measurement<long>> ObserveTokens()
    {
        foreach (var counts in _tokens.Values)
        {
            if (Interlocked.Read(ref counts.Prompt) is > 0 and var prompt) yield return new Measurement<long>(prompt, new("model", counts.Model), new("kind", "prompt"));
            if (Interlocked.Read(ref counts.Completion) is > 0 and var completion) yield return new Measurement<long>(completion, new("model", counts.Model), new("kind", "completion"));
        }
    }

    private sealed class TokenCounts(string model)
    {
        public readonly string Model = model;
        public long Prompt;
        public long Completion;
    }

    private IEnumerable<Measurement<long>> ObserveRequests()
    {
        foreach (var ((model, host, outcome), count) in _requests)
        {
            yield return new Measurement<long>(Interlocked.Read(ref count.Value), new("model", model), new("host", host), new("outcome", outcome));
        }
    }
}
