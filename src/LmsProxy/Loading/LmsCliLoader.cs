using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using CliWrap;
using CliWrap.Buffered;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>
/// Loads and unloads through the lms CLI, run by CliWrap with an argument list (never a shell). The real lms is a
/// Node program that costs hundreds of milliseconds per run, so a load runs exactly one process: <c>lms load</c>.
/// Whether the model is loaded, before and after, comes from LM Studio's REST list (the caller's job); the file path
/// that <c>--exact</c> needs comes from <c>lms ls --json</c>, read once and cached, and read again for a key it lacks.
/// </summary>
public sealed class LmsCliLoader(string lmsPath, Uri host, ProxySettings settings) : IModelLoader
{
    private volatile Dictionary<string, string> _paths = new(StringComparer.OrdinalIgnoreCase);
    private readonly SemaphoreSlim _listing = new(1, 1);

    public string Name => "lms";

    public string LmsPath { get; } = lmsPath;

    /// <summary>Reads the key-to-path table ahead of the first cold request (called in the background at start-up).</summary>
    public async Task WarmPathsAsync(CancellationToken cancellationToken)
    {
        try
        {
            await ListAsync(cancellationToken);
        }
        catch (ModelLoadException)
        {
            // LM Studio may not run yet; the first load reads the list again.
        }
    }

    public async Task<string> LoadAsync(CatalogModel model, ModelLoadSettings modelSettings, CancellationToken cancellationToken)
    {
        var path = await PathOfAsync(model.Key, cancellationToken);
        List<string> args = ["load", path, "--exact", "-y", "--identifier", model.Key];
        if (modelSettings.ContextLength is { } ctx) args.AddRange(["--context-length", ctx.ToString(CultureInfo.InvariantCulture)]);
        if (modelSettings.Gpu is { } gpu) args.AddRange(["--gpu", gpu]);
        if (modelSettings.Ttl is { } ttl) args.AddRange(["--ttl", ttl.ToString(CultureInfo.InvariantCulture)]);
        if (modelSettings.Parallel is { } parallel) args.AddRange(["--parallel", parallel.ToString(CultureInfo.InvariantCulture)]);
        var load = await RunAsync(args, cancellationToken);
        if (load.ExitCode != 0)
        {
            throw ModelLoadException.From($"lms load {model.Key} failed (exit {load.ExitCode}): ", load.StandardError + " " + load.StandardOutput);
        }
        return model.Key;
    }

    public async Task UnloadAsync(string instanceId, CancellationToken cancellationToken)
    {
        // An exact identifier; lms exits 0 even when it is not loaded (contract §3.4), which is what we want.
        var unload = await RunAsync(["unload", instanceId], cancellationToken);
        if (unload.ExitCode != 0)
        {
            throw new ModelLoadException($"lms unload {instanceId} failed (exit {unload.ExitCode}): {Excerpt.Of(unload.StandardError + " " + unload.StandardOutput)}");
        }
    }

    private async Task<string> PathOfAsync(string key, CancellationToken cancellationToken)
    {
        if (!_paths.TryGetValue(key, out var path))
        {
            await ListAsync(cancellationToken);
            if (!_paths.TryGetValue(key, out path)) throw new ModelLoadException($"lms ls does not list '{key}', so it cannot be loaded exactly.");
        }
        return path;
    }

    private async Task ListAsync(CancellationToken cancellationToken)
    {
        var seen = _paths;
        await _listing.WaitAsync(cancellationToken);
        try
        {
            if (!ReferenceEquals(seen, _paths)) return; // another caller just read it
            var downloaded = await RunJsonAsync(["ls", "--json"], LmsJson.Default.ListLmsModel, cancellationToken);
            var paths = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var model in downloaded)
            {
                // A path that could be read as an option is never passed on.
                if (model.ModelKey is { Length: > 0 } key && model.Path is { Length: > 0 } p && !p.StartsWith('-')) paths[key] = p;
            }
            _paths = paths;
        }
        finally
        {
            _listing.Release();
        }
    }

    private async Task<T> RunJsonAsync<T>(List<string> args, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> json, CancellationToken cancellationToken)
    {
        var result = await RunAsync(args, cancellationToken);
        var command = "lms " + string.Join(' ', args);
        if (result.ExitCode != 0)
        {
            throw new ModelLoadException($"{command} failed (exit {result.ExitCode}): {Excerpt.Of(result.StandardError + " " + result.StandardOutput)}");
        }
        try
        {
            // JSON goes to stdout; stderr is prose and is never parsed.
            return JsonSerializer.Deserialize(result.StandardOutput, json) ?? throw new JsonException("null");
        }
        catch (JsonException)
        {
            throw new ModelLoadException($"{command} printed something that is not the expected JSON: {Excerpt.Of(result.StandardOutput)}");
        }
    }

    private async Task<BufferedCommandResult> RunAsync(List<string> args, CancellationToken cancellationToken)
    {
        if (!host.IsLoopback)
        {
            // lms talks to a remote LM Studio only when told where it is (hidden --host/--port flags).
            args.AddRange(["--host", host.Host, "--port", host.Port.ToString(CultureInfo.InvariantCulture)]);
        }
        var limit = settings.Current.Lms.Timeout;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(limit);
        try
        {
            return await Cli.Wrap(LmsPath)
                .WithArguments(args)
                .WithValidation(CommandResultValidation.None)
                .ExecuteBufferedAsync(timeout.Token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ModelLoadException($"lms {args[0]} did not finish within {limit.TotalSeconds:0} s and was killed.", inner: ex);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new ModelLoadException($"lms could not be started from {LmsPath}: {ex.Message}", inner: ex);
        }
    }

    internal sealed record LmsModel(
        [property: JsonPropertyName("modelKey")] string? ModelKey,
        [property: JsonPropertyName("path")] string? Path);
}
