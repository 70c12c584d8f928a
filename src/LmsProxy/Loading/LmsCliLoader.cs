using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using CliWrap;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>
/// Loads and unloads through the lms CLI, run by CliWrap with an argument list (never a shell). The real lms is a
/// Node program that costs hundreds of milliseconds per run, so a load runs exactly one process: <c>lms load</c>.
/// Whether the model is loaded, before and after, comes from LM Studio's REST list (the caller's job); the file path
/// that <c>--exact</c> needs comes from <c>lms ls --json</c>, read once and cached, and read again for a key it lacks.
/// lms is run as a service needs it (addendum F1, F2, F4, F7, F11): always <c>-y</c> and <c>--local</c>, stdin at end
/// of file (a picker then exits instead of waiting), <c>LMS_LANG=en</c> (its words are classified), a hard time limit,
/// and load's stdout (spinner frames, ANSI codes) is read for its percentage only, never parsed as JSON.
/// </summary>
internal sealed partial class LmsCliLoader(string lmsPath, Uri host, ProxySettings settings, LmStudioApi? api = null, ILogger? logger = null) : IModelLoader, ILoadProgressSource
{
    /// <summary>Flags an older lms may not know; each is dropped (once, for good) when lms says so.</summary>
    private static readonly string[] OptionalFlags = ["--local"];

    private volatile Dictionary<string, string> _paths = new(StringComparer.OrdinalIgnoreCase);
    private readonly SemaphoreSlim _listing = new(1, 1);
    private readonly ConcurrentDictionary<string, bool> _dropped = new(StringComparer.Ordinal);

    public string Name => "lms";

    public string LmsPath { get; } = lmsPath;

    /// <summary>What the proxy learned about this lms that an operator should know (shown in /status with the loader's reason).</summary>
    public string Notes => _dropped.IsEmpty ? "" : string.Join(" ", _dropped.Keys.Order(StringComparer.Ordinal).Select(DroppedNote));

    /// <summary>A load's progress as lms's spinner shows it: model key and 0..1 (lms prints it since 2026-05).</summary>
    public event Action<string, double>? LoadProgress;

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
        while (true)
        {
            // -y: never the interactive picker; --local: never another machine through LM Link (F4).
            List<string> args = ["load", path, "--exact", "-y", .. OptionalFlags.Where(f => !_dropped.ContainsKey(f)), "--identifier", model.Key];
            if (modelSettings.ContextLength is { } ctx) args.AddRange(["--context-length", ctx.ToString(CultureInfo.InvariantCulture)]);
            if (modelSettings.Gpu is { } gpu) args.AddRange(["--gpu", gpu]);
            if (modelSettings.Ttl is { } ttl) args.AddRange(["--ttl", ttl.ToString(CultureInfo.InvariantCulture)]);
            if (modelSettings.Parallel is { } parallel) args.AddRange(["--parallel", parallel.ToString(CultureInfo.InvariantCulture)]);
            var spinner = new SpinnerProgress(fraction => LoadProgress?.Invoke(model.Key, fraction));
            var load = await RunAsync(args, cancellationToken, spinner.Feed);
            if (load.ExitCode != 0 && DropUnknownFlag(load.StandardError)) continue;
            if (load.ExitCode != 0)
            {
                // stderr only: stdout holds the spinner's frames (F1).
                var prefix = $"lms load {model.Key} failed (exit {load.ExitCode}): ";
                throw ServerHint(load.StandardError) is { } hint ? new ModelLoadException(prefix + hint) : ModelLoadException.From(prefix, load.StandardError);
            }
            if (api is not null) await LoadVerification.CheckVariantAsync(api, model, model.Key, cancellationToken);
            return model.Key;
        }
    }

    public async Task UnloadAsync(string instanceId, CancellationToken cancellationToken)
    {
        // An exact identifier; lms exits 0 even when it is not loaded (contract §3.4), which is what we want.
        var unload = await RunAsync(["unload", instanceId], cancellationToken);
        if (unload.ExitCode != 0)
        {
            throw new ModelLoadException($"lms unload {instanceId} failed (exit {unload.ExitCode}): {ServerHint(unload.StandardError) ?? Excerpt.Of(unload.StandardError + " " + unload.StandardOutput)}");
        }
        api?.LoadedVariants.Forget(instanceId);
    }

    /// <summary>
    /// <c>lms ps --json</c>: every loaded instance lms sees, on this machine and on LM Link peers (F10), with the
    /// context, slots and variant LM Studio applied. For cross-checks the REST list cannot do (instances under a variant
    /// key, F15; other devices' instances, which must never be counted or unloaded here).
    /// </summary>
    public async Task<IReadOnlyList<LmsInstance>> ListLoadedAsync(CancellationToken cancellationToken) =>
        await RunJsonAsync(["ps", "--json"], LmsJson.Default.ListLmsInstance, cancellationToken);

    private bool DropUnknownFlag(string stderr)
    {
        var unknown = UnknownOption().Match(stderr);
        if (!unknown.Success || !OptionalFlags.Contains(unknown.Groups[1].Value)) return false;
        if (!_dropped.TryAdd(unknown.Groups[1].Value, true)) return false;
        if (logger is not null) LogFlagDropped(logger, LmsPath, unknown.Groups[1].Value, DroppedNote(unknown.Groups[1].Value));
        return true;
    }

    [LoggerMessage(EventId = 60, Level = LogLevel.Warning, Message = "lms at {Path} rejects {Flag}; it is left out from now on. {Note}")]
    private static partial void LogFlagDropped(ILogger logger, string path, string flag, string note);

    private static string DroppedNote(string flag) => flag switch
    {
        "--local" => "This lms does not know --local (it is older): loads run without it, so with LM Link on a load may go to another machine. Update LM Studio, or keep LM Link off on this host.",
        _ => $"This lms does not know {flag}: it is left out.",
    };

    /// <summary>lms found no server: most often it runs as another OS user than LM Studio, with another home (F7). Null otherwise.</summary>
    private static string? ServerHint(string output)
    {
        if (!output.Contains("Failed to start or connect to local LM Studio API server", StringComparison.OrdinalIgnoreCase)) return null;
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return $"lms found no LM Studio server to talk to. lms finds the server and its key through the home folder of the OS user it runs as: " +
               $"here user '{Environment.UserName}', home '{home}'. Run LmsProxy as the same OS user as LM Studio (or give it that user's HOME/USERPROFILE), " +
               $"or set LmsProxy:Loader to rest. lms said: {Excerpt.Of(output)}";
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
                // A path that could be read as an option is never passed on; another device's model is not loaded here.
                if (model.ModelKey is { Length: > 0 } key && model.Path is { Length: > 0 } p && !p.StartsWith('-') && model.DeviceIdentifier is null) paths[key] = p;
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
            throw new ModelLoadException($"{command} failed (exit {result.ExitCode}): {ServerHint(result.StandardError) ?? Excerpt.Of(result.StandardError + " " + result.StandardOutput)}");
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

    private sealed record RunResult(int ExitCode, string StandardOutput, string StandardError);

    private async Task<RunResult> RunAsync(List<string> args, CancellationToken cancellationToken, Action<string>? onStdout = null)
    {
        if (!host.IsLoopback)
        {
            // lms talks to a remote LM Studio only when told where it is (hidden --host/--port flags).
            args.AddRange(["--host", host.Host, "--port", host.Port.ToString(CultureInfo.InvariantCulture)]);
        }
        var limit = settings.Current.Loading.Lms.Timeout;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(limit);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        try
        {
            var result = await Cli.Wrap(LmsPath)
                .WithArguments(args)
                // End of file at once: a prompt lms opens anyway exits instead of waiting for a terminal (F2).
                .WithStandardInputPipe(PipeSource.Null)
                // English whatever the machine's locale: the proxy reads lms's words (F11).
                .WithEnvironmentVariables(env => env.Set("LMS_LANG", "en"))
                .WithStandardOutputPipe(PipeTarget.Create((stream, ct) => ReadAsync(stream, stdout, onStdout, ct)))
                .WithStandardErrorPipe(PipeTarget.ToStringBuilder(stderr))
                .WithValidation(CommandResultValidation.None)
                .ExecuteAsync(timeout.Token);
            return new RunResult(result.ExitCode, stdout.ToString(), stderr.ToString());
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

    /// <summary>Keeps stdout whole and hands each chunk on as it comes (the spinner redraws with \r, never a newline).</summary>
    private static async Task ReadAsync(Stream stream, StringBuilder into, Action<string>? onChunk, CancellationToken cancellationToken)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var buffer = new char[4096];
        int read;
        while ((read = await reader.ReadAsync(buffer, cancellationToken)) > 0)
        {
            var chunk = new string(buffer, 0, read);
            lock (into) into.Append(chunk);
            onChunk?.Invoke(chunk);
        }
    }

    [GeneratedRegex(@"unknown option '(--?[A-Za-z][\w-]*)'")]
    private static partial Regex UnknownOption();

    internal sealed record LmsModel(
        [property: JsonPropertyName("modelKey")] string? ModelKey,
        [property: JsonPropertyName("path")] string? Path,
        [property: JsonPropertyName("deviceIdentifier")] string? DeviceIdentifier);
}

/// <summary>One entry of <c>lms ps --json</c> (contract §3.4), with the fields the proxy budgets and filters on.</summary>
internal sealed record LmsInstance(
    [property: JsonPropertyName("identifier")] string? Identifier,
    [property: JsonPropertyName("modelKey")] string? ModelKey,
    [property: JsonPropertyName("deviceIdentifier")] string? DeviceIdentifier,
    [property: JsonPropertyName("contextLength")] int? ContextLength,
    [property: JsonPropertyName("parallel")] int? Parallel,
    [property: JsonPropertyName("selectedVariant")] string? SelectedVariant)
{
    /// <summary>As lms's own isLocal(): no device, or this machine's device id when LM Link is on (F10).</summary>
    public bool IsLocal(string? localDeviceIdentifier = null) => DeviceIdentifier is null || DeviceIdentifier == localDeviceIdentifier;

    /// <summary>As the catalog's instance: the id requests use, what LM Studio applied, and where it runs.</summary>
    public LoadedInstance ToLoadedInstance(string? localDeviceIdentifier = null) =>
        new(Identifier ?? ModelKey ?? "", ContextLength, Parallel, IsLocal(localDeviceIdentifier) ? null : DeviceIdentifier);
}
