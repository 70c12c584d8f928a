namespace LmsProxy.Configuration;

/// <summary>One LM Studio server behind the proxy (<c>LmsProxy:Hosts:&lt;name&gt;</c>).</summary>
internal sealed class LmStudioHostOptions
{
    /// <summary>The host's name (its key under Hosts); "default" for the single Upstream.</summary>
    public string Name { get; set; } = "default";

    public Uri? Url { get; set; }

    /// <summary>LM Studio API token for this host; sent to this host only.</summary>
    public string? ApiKey { get; set; }

    public LoaderKind Loader { get; set; } = LoaderKind.Auto;

    /// <summary>Overrides of the shared capacity settings; null: the shared ones.</summary>
    public CapacityOptions? Capacity { get; set; }

    /// <summary>Which models this host may serve: keys or globs (<c>qwen/*</c>); empty: every model it has.</summary>
    public List<string> Models { get; set; } = [];
}

/// <summary>How much one LM Studio host may hold, and when the proxy unloads (<c>LmsProxy:Capacity</c>).</summary>
internal sealed class CapacityOptions
{
    /// <summary>Most models loaded at once; 0: no count limit.</summary>
    public int MaxLoadedModels { get; set; }

    /// <summary>Memory the loaded models may use, in bytes; 0: unknown (LM Studio's refusals teach it).</summary>
    public long MemoryBudgetBytes { get; set; }

    /// <summary>Unload a model unused for this long (unless pinned or busy); 00:00:00: never.</summary>
    public TimeSpan IdleUnloadAfter { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Longest a request waits for a busy model to make room before that model stops taking new requests and is
    /// swapped out (and the least a model stays once loaded). Until then the loaded model's requests are served
    /// together. "auto": 1.15 × the load times of the two models involved, between 2 and 30 s. A duration: that bound;
    /// 00:00:00: strict arrival order.
    /// </summary>
    public string MaxSwapWait { get; set; } = "auto";

    /// <summary>The bound <see cref="MaxSwapWait"/> names; null for auto (or a value validation rejects).</summary>
    public TimeSpan? SwapWaitBound =>
        TimeSpan.TryParse(MaxSwapWait, System.Globalization.CultureInfo.InvariantCulture, out var bound) ? bound : null;

    /// <summary>Whether models loaded outside the proxy (in the LM Studio app) may be unloaded to make room.</summary>
    public bool EvictForeign { get; set; }

    /// <summary>Requests in flight at which an instance counts as saturated (spill over to another host); 0: its parallel.</summary>
    public int SpillAt { get; set; }

    public CapacityOptions Clone() => (CapacityOptions)MemberwiseClone();
}
