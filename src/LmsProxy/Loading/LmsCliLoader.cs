using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using CliWrap;
using CliWrap.Buffered;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Loading;

/// <summary>
/// Loads through the lms CLI, run by CliWrap with an argument list (never a shell). lms load matches keys
/// fuzzily and is not idempotent, so: ps first, load by exact path with --identifier, then ps again to verify.
/// </summary>
public sealed class LmsCliLoader(string lmsPath, ProxySettings settings) : IModelLoader
{
    public string LmsPath { get; } = lmsPath;

    public async Task<string> LoadAsync(CatalogModel model, ModelLoadSettings modelSettings, CancellationToken cancellationToken)
    {
        if (FindInstance(await PsAsync(cancellationToken), model.Key) is { } existing) return existing;

        var downloaded = await RunJsonAsync<List<LmsModel>>(["ls", "--json"], cancellationToken);
        var entry = downloaded.FirstOrDefault(m => string.Equals(m.ModelKey, model.Key, StringComparison.OrdinalIgnoreCase))
            ?? throw new ModelLoadException($"lms ls does not list '{model.Key}', so it cannot be loaded exactly.");
        if (string.IsNullOrEmpty(entry.Path) || entry.Path.StartsWith('-'))
        {
            throw new ModelLoadException($"lms ls gave an unusable path for '{model.Key}': {Excerpt.Of(entry.Path)}");
        }

        List<string> args = ["load", entry.Path, "--exact", "-y", "--identifier", model.Key];
        if (modelSettings.ContextLength is { } ctx) args.AddRange(["--context-length", ctx.ToString(CultureInfo.InvariantCulture)]);
        if (modelSettings.Gpu is { } gpu) args.AddRange(["--gpu", gpu]);
        if (modelSettings.Ttl is { } ttl) args.AddRange(["--ttl", ttl.ToString(CultureInfo.InvariantCulture)]);
        if (modelSettings.Parallel is { } parallel) args.AddRange(["--parallel", parallel.ToString(CultureInfo.InvariantCulture)]);
        var load = await RunAsync(args, cancellationToken);
        if (load.ExitCode != 0)
        {
            throw new ModelLoadException($"lms load {model.Key} failed (exit {load.ExitCode}): {Excerpt.Of(load.StandardError + " " + load.StandardOutput)}");
        }

        return FindInstance(await PsAsync(cancellationToken), model.Key)
            ?? throw new ModelLoadException($"lms load {model.Key} exited 0 but lms ps does not list it: {Excerpt.Of(load.StandardError)}");
    }

    private Task<List<LmsModel>> PsAsync(CancellationToken cancellationToken) => RunJsonAsync<List<LmsModel>>(["ps", "--json"], cancellationToken);

    private static string? FindInstance(List<LmsModel> loaded, string key) =>
        loaded.FirstOrDefault(m => string.Equals(m.Identifier, key, StringComparison.OrdinalIgnoreCase))?.Identifier;

    private async Task<T> RunJsonAsync<T>(List<string> args, CancellationToken cancellationToken)
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
            return JsonSerializer.Deserialize<T>(result.StandardOutput) ?? throw new JsonException("null");
        }
        catch (JsonException)
        {
            throw new ModelLoadException($"{command} printed something that is not the expected JSON: {Excerpt.Of(result.StandardOutput)}");
        }
    }

    private async Task<BufferedCommandResult> RunAsync(List<string> args, CancellationToken cancellationToken)
    {
        var upstream = settings.Current.Upstream;
        if (!upstream.IsLoopback)
        {
            // lms talks to a remote LM Studio only when told where it is (hidden --host/--port flags).
            args.AddRange(["--host", upstream.Host, "--port", upstream.Port.ToString(CultureInfo.InvariantCulture)]);
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.Current.Lms.Timeout);
        try
        {
            return await Cli.Wrap(LmsPath)
                .WithArguments(args)
                .WithValidation(CommandResultValidation.None)
                .ExecuteBufferedAsync(timeout.Token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ModelLoadException($"lms {args[0]} did not finish within {settings.Current.Lms.Timeout.TotalSeconds:0} s and was killed.", ex);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new ModelLoadException($"lms could not be started from {LmsPath}: {ex.Message}", ex);
        }
    }

    private sealed record LmsModel(
        [property: JsonPropertyName("modelKey")] string? ModelKey,
        [property: JsonPropertyName("identifier")] string? Identifier,
        [property: JsonPropertyName("path")] string? Path);
}
