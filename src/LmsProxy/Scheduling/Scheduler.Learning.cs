using LmsProxy.Hosts;
using LmsProxy.Models;

namespace LmsProxy.Scheduling;

/// <summary>What LM Studio taught: memory ceilings from its refusals, footprints, and the estimates the policy plans with.</summary>
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
            ?? _settings.Current.SettingsFor(model.Key).ContextLength ?? 4096;
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
}
