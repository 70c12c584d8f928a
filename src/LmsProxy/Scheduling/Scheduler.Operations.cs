using System.Diagnostics;
using LmsProxy.Hosts;
using LmsProxy.Loading;
using LmsProxy.Models;

namespace LmsProxy.Scheduling;

/// <summary>Loads and unloads, run outside the lock; each ends in exactly one final state (ready, gone, refused, failed) and pumps again.</summary>
internal sealed partial class Scheduler
{
    private void StartLoad(LmStudioHost host, string key, IReadOnlyList<HostedModel> victims, WaitGroup? group)
    {
        var unloading = new List<HostedModel>();
        foreach (var victim in victims)
        {
            if (victim.TryBeginUnload())
            {
                unloading.Add(victim);
                continue;
            }
            // A request took the victim between plan and now: put back what was taken, plan again on the next pump.
            foreach (var taken in unloading) taken.SetState(InstanceState.Ready);
            _dirty = true;
            return;
        }
        var model = host.Catalog.Resolve(key)!;
        var instance = new HostedModel(host, model.Key, loadedByProxy: true, Estimate(host, model))
        {
            Forwarded = _metrics.RequestCounter(model.Key, host.Name, "forwarded"),
            LoadStartedAt = _time.GetUtcNow(),
        };
        host.Instances[model.Key] = instance;
        host.Version++;
        host.Operation = unloading.Count == 0 ? $"loading {model.Key}" : $"unloading {string.Join(", ", unloading.Select(v => v.ModelKey))} to load {model.Key}";
        if (group is not null) group.Situation = $"'{model.Key}' is loading on host '{host.Name}'";
        _dirty = true;
        // Progress and time left, for /status and the waiting requests, from the moment the instance shows as loading
        // (tracked inside the task, a busy machine showed it loading with no progress source for a moment).
        var tracked = TrackLoad(instance, _time.GetTimestamp(), unloading.Count > 0);
        _ = Task.Run(() => RunLoadAsync(host, model, instance, unloading, tracked));
    }

    private async Task RunLoadAsync(LmStudioHost host, CatalogModel model, HostedModel instance, List<HostedModel> victims, TrackedLoad tracked)
    {
        using var _ = tracked;
        var options = _settings.Current;
        using var limit = new CancellationTokenSource(options.Loading.LoadTimeout, _time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(limit.Token, _stopping.Token);
        var started = Stopwatch.GetTimestamp();
        var track = tracked.Track;
        try
        {
            // Loaded already (the LM Studio app, JIT)? One REST call, no process.
            var before = await host.Api.GetCatalogAsync(timeout.Token);
            if (before.Resolve(model.Key) is { IsLoaded: true } already)
            {
                lock (_lock)
                {
                    foreach (var victim in victims) victim.SetState(InstanceState.Ready);
                    instance.LoadedByProxy = false;
                    MarkLoaded(instance, already.Instances);
                    TakeIn(host, before, host.Version, force: true);
                }
                return;
            }

            // "refusal" when only what LM Studio's refusals taught made the room necessary, "capacity" when the configured limits did.
            var reason = host.LearnedCeilingBytes > 0 && host.Capacity.MaxLoadedModels == 0 &&
                (host.Capacity.MemoryBudgetBytes == 0 || host.LearnedCeilingBytes < host.Capacity.MemoryBudgetBytes) ? "refusal" : "capacity";
            foreach (var victim in victims) await UnloadInstanceAsync(host, victim, reason, timeout.Token);
            if (victims.Count > 0)
            {
                _metrics.Swapped(host.Name);
                Interlocked.Increment(ref _swapCount);
                Events.Add(new(_time.GetUtcNow(), "swap", host.Name, model.Key, $"unloaded {string.Join(", ", victims.Select(v => v.ModelKey))}"));
            }

            LogLoadStarted(_logger, model.Key, host.Name, host.Loader.Name);
            Events.LoadStarting(host.Name, model.Key); // waiting requests are "loading" now (the activity record)
            using (var load = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, track.Stall.Token))
            {
                await host.Loader.Loader.LoadAsync(model, options.Loading.SettingsFor(model.Key), load.Token);
            }

            // Verify from the REST list (one HTTP call): the model may already be gone again (another app, a user).
            var after = await host.Api.GetCatalogAsync(timeout.Token);
            var elapsed = Stopwatch.GetElapsedTime(started);
            lock (_lock)
            {
                if (after.Resolve(model.Key) is { IsLoaded: true } loaded)
                {
                    _vanishedLoads.Remove((host.Name, model.Key));
                    _lastErrors.Remove((host.Name, model.Key));
                    _lastLoadDurations[(host.Name, model.Key)] = elapsed;
                    LearnTail(host, model.Key, track, _time.GetTimestamp());
                    SaveLoadTime(host.Name, model.Key, elapsed);
                    MarkLoaded(instance, loaded.Instances);
                    // Budget with what LM Studio loaded (AutoFit may have chosen a larger context than asked), not with the ask.
                    instance.EstimatedBytes = Estimate(host, loaded);
                    LearnFromSuccess(host);
                    _metrics.LoadEnded(model.Key, host.Name, "success", elapsed);
                    Events.Add(new(_time.GetUtcNow(), "load", host.Name, model.Key, DurationMs: elapsed.TotalMilliseconds));
                    LogLoaded(_logger, model.Key, host.Name, elapsed.TotalMilliseconds);
                }
                else
                {
                    // Not a failure: the load worked and the model went again. Its waiters stay, the next pump reloads it.
                    Forget(instance, "dropped", "gone right after its load");
                    var vanished = _vanishedLoads[(host.Name, model.Key)] = _vanishedLoads.GetValueOrDefault((host.Name, model.Key)) + 1;
                    LogVanished(_logger, model.Key, host.Name, vanished);
                    if (vanished >= VanishedLoadsTolerated)
                    {
                        _vanishedLoads.Remove((host.Name, model.Key));
                        FailModel(model.Key, host, Admission.Refusal(AdmissionStatus.LoadFailed,
                            $"LM Studio at {host.Url} reported loading '{model.Key}' {vanished} times, but never listed it afterwards."));
                    }
                }
                TakeIn(host, after, host.Version, force: true);
            }
        }
        catch (ModelLoadException ex) when (ex.Kind != LoadFailureKind.Other && !timeout.IsCancellationRequested)
        {
            lock (_lock) LearnFromRefusal(host, model, instance, ex, Stopwatch.GetElapsedTime(started));
        }
        catch (ModelLoadException ex)
        {
            lock (_lock) LoadFailed(host, model.Key, instance, ex.Message, Stopwatch.GetElapsedTime(started));
        }
        catch (UpstreamUnavailableException ex)
        {
            _cluster.ReportUnreachable(host);
            lock (_lock)
            {
                Forget(instance, null, null);
                host.LastRefreshError = ex.Message;
                // Requests that can go nowhere else get the reason now; the others are placed on another host.
                foreach (var group in _groups.Values.Where(g => string.Equals(g.Key, model.Key, StringComparison.OrdinalIgnoreCase)).ToList())
                {
                    if (ReferenceEquals(group.Pin, host)) Fail(group, ConversationHostDown(host));
                    else if (!_cluster.Hosts.Any(h => !ReferenceEquals(h, host) && h.IsHealthy && h.Catalog.Resolve(model.Key) is not null && h.Allows(model.Key)))
                    {
                        Fail(group, Admission.Refusal(AdmissionStatus.UpstreamUnavailable, ex.Message));
                    }
                }
            }
        }
        catch (UpstreamRefusedException ex)
        {
            lock (_lock)
            {
                Forget(instance, null, null);
                host.Unverified = true;
                host.LastRefreshError = ex.Message;
                foreach (var group in _groups.Values.Where(g => string.Equals(g.Key, model.Key, StringComparison.OrdinalIgnoreCase)).ToList())
                {
                    Fail(group, new(AdmissionStatus.Unverified, host, Detail: ex.Message));
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            lock (_lock) Forget(instance, null, null); // the proxy is stopping
        }
        catch (OperationCanceledException) when (track.Stall.IsCancellationRequested && !timeout.IsCancellationRequested)
        {
            lock (_lock) LoadFailed(host, model.Key, instance, StalledMessage(model.Key, host, track, options.Loading.LoadStallTimeout), Stopwatch.GetElapsedTime(started));
        }
        catch (OperationCanceledException)
        {
            lock (_lock) LoadFailed(host, model.Key, instance, $"Loading '{model.Key}' did not finish within {options.Loading.LoadTimeout.TotalSeconds:0} s (LmsProxy:LoadTimeout).", Stopwatch.GetElapsedTime(started));
        }
        catch (Exception ex)
        {
            // Whatever went wrong (a bug, a library), the load ends here: never an instance left "loading".
            lock (_lock) LoadFailed(host, model.Key, instance, $"Loading '{model.Key}' on host '{host.Name}' failed unexpectedly ({ex.GetType().Name}: {ex.Message}).", Stopwatch.GetElapsedTime(started));
        }
        finally
        {
            lock (_lock)
            {
                // A victim whose unload did not happen (the load stopped first) is still loaded: it serves again.
                foreach (var victim in victims.Where(v => v.State == InstanceState.Unloading)) victim.SetState(InstanceState.Ready);
                EndOperation(host);
            }
        }
    }

    private async Task UnloadInstanceAsync(LmStudioHost host, HostedModel victim, string reason, CancellationToken cancellationToken)
    {
        // Never another LM Link device's instance: only this machine's count against its memory (F10, F21).
        foreach (var id in victim.LmStudioInstances.Where(i => !i.IsRemote).Select(i => i.Id).DefaultIfEmpty(victim.ModelKey))
        {
            await host.Loader.Loader.UnloadAsync(id, cancellationToken);
        }
        lock (_lock)
        {
            Forget(victim, null, null);
            _unloadCounts[reason] = _unloadCounts.GetValueOrDefault(reason) + 1;
            _metrics.Unloaded(victim.ModelKey, host.Name, reason);
            Events.Add(new(_time.GetUtcNow(), "unload", host.Name, victim.ModelKey, reason));
            LogUnloaded(_logger, victim.ModelKey, host.Name, reason);
        }
    }

    private void StartUnload(LmStudioHost host, HostedModel instance, string reason)
    {
        if (!instance.TryBeginUnload()) return;
        host.Operation = $"unloading {instance.ModelKey} ({reason})";
        host.Version++;
        _dirty = true;
        _ = Task.Run(async () =>
        {
            using var limit = new CancellationTokenSource(_settings.Current.Loading.LoadTimeout, _time);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(limit.Token, _stopping.Token);
            try
            {
                await UnloadInstanceAsync(host, instance, reason, timeout.Token);
            }
            catch (Exception ex)
            {
                // Any failure ends the unload: the model is still loaded and serves again, or, when an operator asked
                // for the unload, it keeps draining and the unload is tried again after a pause.
                LogUnloadFailed(_logger, instance.ModelKey, host.Name, ex.Message);
                lock (_lock)
                {
                    if (instance.UnloadWhenDrained)
                    {
                        instance.UnloadRetryAt = _time.GetTimestamp() + ToTimestamp(UnloadRetryDelay);
                        instance.SetState(InstanceState.Draining);
                    }
                    else
                    {
                        instance.SetState(InstanceState.Ready);
                    }
                }
            }
            finally
            {
                lock (_lock) EndOperation(host);
            }
        });
    }

    /// <summary>The host's load or unload is over (under the lock): the host is free again, and the queue is served.</summary>
    private void EndOperation(LmStudioHost host)
    {
        host.Operation = null;
        host.Version++;
        _dirty = true;
        Pump();
    }

    private void LoadFailed(LmStudioHost host, string key, HostedModel instance, string message, TimeSpan elapsed)
    {
        Forget(instance, null, null);
        _lastErrors[(host.Name, key)] = (message, _time.GetUtcNow());
        _metrics.LoadEnded(key, host.Name, "failure", elapsed);
        Events.Add(new(_time.GetUtcNow(), "failure", host.Name, key, Excerpt.Of(message, 160)));
        LogLoadFailed(_logger, key, host.Name, message);
        FailModel(key, host, Admission.Refusal(AdmissionStatus.LoadFailed, message));
    }

    private void MarkLoaded(HostedModel instance, IReadOnlyList<LoadedInstance> lmStudioInstances)
    {
        instance.LmStudioInstances = lmStudioInstances;
        instance.LoadedAt = _time.GetUtcNow();
        if (instance.LoadedByProxy) instance.LoadedAtTimestamp = _time.GetTimestamp();
        instance.Touch(_time.GetTimestamp());
        instance.SetState(InstanceState.Ready);
        instance.Host.Version++;
        _dirty = true;
    }

    /// <summary>The instance is no longer loaded (unloaded, evicted, failed to load).</summary>
    private void Forget(HostedModel instance, string? eventKind, string? why)
    {
        var host = instance.Host;
        if (host.Instances.TryGetValue(instance.ModelKey, out var current) && ReferenceEquals(current, instance))
        {
            host.Instances.Remove(instance.ModelKey);
            host.Version++;
            if (eventKind is not null) Events.Add(new(_time.GetUtcNow(), eventKind, host.Name, instance.ModelKey, why));
        }
        instance.SetState(InstanceState.Gone);
        _dirty = true;
    }
}
