using LmsProxy.Loading;
using LmsProxy.Hosts;
using LmsProxy.Models;

namespace LmsProxy.Scheduling;

/// <summary>What LM Studio taught: memory ceilings from its refusals and successes, footprints, and the estimates the policy plans with.</summary>
internal sealed partial class Scheduler
{
    private static long Budget(LmStudioHost host)
    {
        var configured = host.Capacity.MemoryBudgetBytes;
        var learned = host.LearnedCeilingBytes;
        return configured > 0 && learned > 0 ? Math.Min(configured, learned) : Math.Max(configured, learned);
    }

    /// <summary>
    /// A model's memory: what LM Studio's refusal said it needs, else its file size plus 10% and its context's KV cache
    /// (about 24 KiB per token per GB of model, at least 16 KiB per token).
    /// </summary>
    private long Estimate(LmStudioHost host, CatalogModel model)
    {
        if (_learnedFootprint.TryGetValue(model.Key, out var learned)) return learned;
        var size = model.SizeBytes > 0 ? model.SizeBytes : 1L << 30;
        var context = host.Instances.GetValueOrDefault(model.Key)?.LmStudioInstances.FirstOrDefault()?.ContextLength
            ?? _settings.Current.Loading.SettingsFor(model.Key).ContextLength ?? 4096;
        var perToken = Math.Max(16 * 1024, (long)(size / 1e9 * 24 * 1024));
        return (long)(size * 1.1) + context * perToken;
    }

    private void LearnFromSuccess(LmStudioHost host)
    {
        var used = host.Instances.Values.Where(i => i.State != InstanceState.Gone).Sum(i => i.EstimatedBytes);
        if (host.LearnedCeilingBytes > 0 && used > host.LearnedCeilingBytes)
        {
            host.LearnedCeilingBytes = used;
            SaveCeiling(host);
        }
    }

    /// <summary>LM Studio refused for lack of memory: learn the host's ceiling (and the model's size, when it said), then plan again.</summary>
    private void LearnFromRefusal(LmStudioHost host, CatalogModel model, HostedModel instance, ModelLoadException ex, TimeSpan elapsed)
    {
        Forget(instance, null, null);
        _metrics.LoadEnded(model.Key, host.Name, "refused", elapsed);
        Events.Add(new(_time.GetUtcNow(), "refusal", host.Name, model.Key, Excerpt.Of(ex.Message, 160)));
        LogRefused(_logger, model.Key, host.Name, ex.Message);
        _lastErrors[(host.Name, model.Key)] = (ex.Message, _time.GetUtcNow());
        if (ex.RequiredBytes is { } required)
        {
            _learnedFootprint[model.Key] = required;
            SaveFootprint(model.Key, required);
        }
        var residents = host.Instances.Values.Where(i => i.State != InstanceState.Gone).ToList();
        if (residents.Count == 0)
        {
            host.TooLarge[model.Key] = _time.GetTimestamp() + ToTimestamp(TooLargeMemory);
            return;
        }
        if (ex.Kind == LoadFailureKind.Ambiguous && !residents.Any(i => i.InFlight == 0 && i.LoadedByProxy && !IsPinned(i.ModelKey)))
        {
            // An engine failure that may not be memory at all: one retry after making room, not a wait for busy models.
            LoadFailed(host, model.Key, instance, ex.Message, elapsed);
            return;
        }
        var ceiling = residents.Sum(i => i.EstimatedBytes) + Estimate(host, model) - 1;
        host.LearnedCeilingBytes = host.LearnedCeilingBytes == 0 ? ceiling : Math.Min(host.LearnedCeilingBytes, ceiling);
        SaveCeiling(host);
    }
}
