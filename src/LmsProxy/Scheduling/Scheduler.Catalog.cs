using System.Collections.Frozen;
using LmsProxy.Hosts;
using LmsProxy.Loading;
using LmsProxy.Models;

namespace LmsProxy.Scheduling;

/// <summary>What LM Studio says it holds: single-flight reads of each host's model list, taking them in, and what the warm path reads (Publish).</summary>
internal sealed partial class Scheduler
{
    private void RememberUnknown(string model, long now)
    {
        if (_unknownNames.Count > 10_000) _unknownNames.Clear(); // bounded: a flood of names costs at most a re-read
        _unknownNames[model] = now + ToTimestamp(UnknownNameMemory);
    }

    /// <summary>
    /// LM Studio answered "not loaded" for a model the proxy believed loaded. Its model list says which: evicted (the
    /// request waits for a reload) or still listed (a contradiction; too many in a row is LM Studio's fault).
    /// Returns a refusal for the request, or null to try again.
    /// </summary>
    public async Task<Admission?> ReportNotLoadedAsync(HostedModel instance, CancellationToken cancellationToken)
    {
        _metrics.NotLoadedAbsorbed(instance.ModelKey, instance.Host.Name);
        LogNotLoadedAbsorbed(_logger, instance.ModelKey, instance.Host.Name);
        var answeredAt = _time.GetTimestamp();
        var read = await ReadAfterAsync(instance.Host, answeredAt, cancellationToken);
        lock (_lock)
        {
            if (!StillListed(instance, read, "LM Studio answered \"not loaded\"")) return null;
            if (++instance.Contradictions < ContradictionsTolerated) return null;
            instance.Contradictions = 0;
            return Admission.Refusal(AdmissionStatus.Inconsistent,
                $"LM Studio at {instance.Host.Url} lists '{instance.ModelKey}' as loaded but answered \"No models loaded\" to it {ContradictionsTolerated} times in a row. " +
                "LM Studio seems stuck: unload and reload the model (lms unload, lms load) or restart LM Studio's server.");
        }
    }

    /// <summary>
    /// LM Studio closed a request's connection before answering. Evicted under it (LM Studio has no drain): false, and
    /// the request waits for a reload. Still listed: true, and the request itself was the trouble (too large, a crash).
    /// </summary>
    public async Task<bool> ReportCutOffAsync(HostedModel instance, CancellationToken cancellationToken)
    {
        var answeredAt = _time.GetTimestamp();
        var read = await ReadAfterAsync(instance.Host, answeredAt, cancellationToken);
        lock (_lock) return StillListed(instance, read, "LM Studio cut a request off");
    }

    /// <summary>A model-list read that began after <paramref name="answeredAt"/>: one under way before may predate an eviction.</summary>
    private async Task<CatalogRead> ReadAfterAsync(LmStudioHost host, long answeredAt, CancellationToken cancellationToken)
    {
        var read = await ReadCatalogAsync(host).WaitAsync(cancellationToken);
        return read.StartedAt >= answeredAt ? read : await ReadCatalogAsync(host).WaitAsync(cancellationToken);
    }

    /// <summary>Under the lock: whether the read still lists the model; if it does not, the instance is forgotten.</summary>
    private bool StillListed(HostedModel instance, CatalogRead read, string why)
    {
        if (read.Catalog is not null && read.Catalog.Resolve(instance.ModelKey)?.IsLoaded == true) return true;
        instance.Contradictions = 0;
        Forget(instance, "dropped", read.Catalog is null ? why : why + ": evicted");
        Pump();
        return false;
    }

    /// <summary>A forward to an instance succeeded: a past contradiction no longer counts.</summary>
    public static void ForwardSucceeded(HostedModel instance)
    {
        if (instance.Contradictions != 0) instance.Contradictions = 0;
    }

    /// <summary>Reads every host's model list and takes it in.</summary>
    public Task RefreshAllAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(_cluster.Hosts.Where(h => !h.Removed).Select(h => RefreshAsync(h, cancellationToken)));

    /// <summary>Reads one host's model list and takes it in (joining a read under way). A host's failure is recorded, not thrown.</summary>
    public Task RefreshAsync(LmStudioHost host, CancellationToken cancellationToken) => ReadCatalogAsync(host).WaitAsync(cancellationToken);

    /// <summary>
    /// The single flight of model-list reads per host: every caller joins the read under way. It runs on the
    /// scheduler's own token (one caller leaving does not end it for the others), and ends in a result, never a throw.
    /// </summary>
    private Task<CatalogRead> ReadCatalogAsync(LmStudioHost host)
    {
        lock (_lock)
        {
            if (host.CatalogRead is { IsCompleted: false } underWay) return underWay;
            var read = Task.Run(() => ReadAndApplyAsync(host));
            host.CatalogRead = read;
            return read;
        }
    }

    private async Task<CatalogRead> ReadAndApplyAsync(LmStudioHost host)
    {
        var started = _time.GetTimestamp();
        long version;
        lock (_lock) version = host.Version;
        try
        {
            var catalog = await host.Api.GetCatalogAsync(_stopping.Token);
            lock (_lock)
            {
                TakeIn(host, catalog, version);
                Pump();
            }
            return new CatalogRead(catalog, started);
        }
        catch (UpstreamRefusedException ex)
        {
            lock (_lock)
            {
                host.Unverified = true;
                host.LastRefreshError = ex.Message;
            }
            return new CatalogRead(null, started, ex.Message);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
        {
            var message = ex is UpstreamUnavailableException ? ex.Message : $"Reading the model list of LM Studio at {host.Url} failed ({ex.GetType().Name}: {ex.Message}).";
            lock (_lock) host.LastRefreshError = message;
            return new CatalogRead(null, started, message);
        }
    }

    private string? KnownKey(string model, LmStudioHost? pin)
    {
        var key = _catalog.Resolve(model)?.Key;
        return key is not null && (pin is null || pin.Catalog.Resolve(key) is not null) ? key : null;
    }

    private Admission Unknown(string model, LmStudioHost? pin)
    {
        var hosts = pin is null ? _cluster.Hosts : [pin];
        if (pin is not null && !pin.IsHealthy) return ConversationHostDown(pin);
        if (hosts.FirstOrDefault(h => h.Unverified && h.IsHealthy) is { } unverified)
        {
            LogUnverified(_logger, model, unverified.Name);
            return new(AdmissionStatus.Unverified, unverified, Detail: unverified.LastRefreshError);
        }
        if (hosts.All(h => h.RefreshedAt is null || !h.IsHealthy) && hosts.Select(h => h.LastRefreshError).FirstOrDefault(e => e is not null) is { } down)
        {
            return Admission.Refusal(AdmissionStatus.UpstreamUnavailable, down);
        }
        var available = string.Join(", ", _catalog.Models.Select(m => m.Key).Order(StringComparer.Ordinal));
        return Admission.Refusal(AdmissionStatus.NotFound,
            $"The model '{model}' is not downloaded in LM Studio{(hosts.Count > 1 ? " on any host" : "")}. Available models: {(available.Length > 0 ? available : "none")}.");
    }

    internal static Admission ConversationHostDown(LmStudioHost pin) => Admission.Refusal(AdmissionStatus.ConversationHostDown,
        $"This conversation's state lives on LM Studio host '{pin.Name}' ({pin.Url}), which is not reachable now. " +
        "It cannot be continued elsewhere; retry when that host is back, or start a new conversation.");

    /// <summary>Takes in a host's model list: what LM Studio loaded or dropped on its own since the proxy last looked.</summary>
    private void TakeIn(LmStudioHost host, ModelCatalog catalog, long versionBeforeRead, bool force = false)
    {
        host.Catalog = catalog;
        host.RefreshedAt = _time.GetUtcNow();
        host.LastRefreshError = null;
        host.Unverified = false;
        _dirty = true;
        // A load or unload that ran while the list was read knows better than the list.
        if (!force && (host.Version != versionBeforeRead || host.Operation is not null)) return;
        // Only this machine's instances are the host's (an LM Link peer's model uses another machine's memory).
        foreach (var model in catalog.Models.Where(m => m.LocalInstances.Any()))
        {
            if (host.Instances.TryGetValue(model.Key, out var known))
            {
                if (known.State is InstanceState.Ready or InstanceState.Draining) known.LmStudioInstances = model.Instances;
                continue;
            }
            var found = new HostedModel(host, model.Key, loadedByProxy: false, Estimate(host, model with { Instances = model.Instances }))
            {
                Forwarded = _metrics.RequestCounter(model.Key, host.Name, "forwarded"),
            };
            host.Instances[model.Key] = found;
            MarkLoaded(found, model.Instances);
            Events.Add(new(_time.GetUtcNow(), "found", host.Name, model.Key, "loaded outside the proxy"));
        }
        foreach (var instance in host.Instances.Values.Where(i => i.State is InstanceState.Ready or InstanceState.Draining).ToList())
        {
            if (catalog.Resolve(instance.ModelKey)?.IsLoaded != true) Forget(instance, "dropped", "LM Studio no longer lists it");
        }
    }

    /// <summary>Rebuilds what the warm path reads: every name of every ready instance, and the union catalog.</summary>
    private void Publish()
    {
        _dirty = false;
        SignalChanged(); // /events readers
        var hosts = _cluster.Hosts;
        _severalHosts = hosts.Count > 1;
        var catalog = ModelCatalog.Union(hosts.Where(h => !h.Removed).Select(h => h.Catalog));
        _catalog = catalog;
        var names = new Dictionary<string, List<HostedModel>>(StringComparer.OrdinalIgnoreCase);
        // Only what a host may serve (its Models allow-list) is offered to the warm path.
        foreach (var instance in hosts.Where(h => !h.Removed).SelectMany(h => h.Instances.Values).Where(i => i.State == InstanceState.Ready && i.Host.Allows(i.ModelKey)))
        {
            foreach (var name in catalog.NamesOf(instance.ModelKey).Concat(instance.LmStudioInstances.Select(i => i.Id)).Distinct(StringComparer.OrdinalIgnoreCase))
            {
                if (!names.TryGetValue(name, out var list)) names[name] = list = [];
                list.Add(instance);
            }
        }
        _ready = names.ToFrozenDictionary(n => n.Key, n => n.Value.ToArray(), StringComparer.OrdinalIgnoreCase);
    }
}
