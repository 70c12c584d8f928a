using System.Text;
using System.Text.Json;

namespace LmStudioSimulator;

/// <summary>
/// What the real lms would print and exit with, for the fake-lms/lms script (contract §3.3–3.4): JSON on stdout,
/// prose on stderr, fuzzy `load` matching, `--exact` by path, a duplicate ":2" instance when loading a loaded key,
/// an interactive prompt (a hang) when several models match without -y, the memory guardrail's refusal (exit 1),
/// and unload by exact identifier, which cuts off the requests in flight like any unload.
/// </summary>
internal static class FakeLmsEndpoints
{
    public static void Map(WebApplication app, SimulatorState state)
    {
        app.MapPost("/_sim/lms", async (HttpContext context) =>
        {
            var form = await context.Request.ReadFormAsync();
            var args = form["a"].Select(a => a ?? "").ToList();
            var (exit, stdout, stderr) = args.FirstOrDefault() switch
            {
                "ps" => ("0", Ps(state), ""),
                "ls" => ("0", Ls(state), ""),
                "load" => await Load(state, args.Skip(1).ToList()),
                "unload" => Unload(state, args.Skip(1).ToList()),
                _ => ("1", "", $"error: unknown command '{args.FirstOrDefault()}'"),
            };
            context.Response.Headers["X-Exit-Code"] = exit;
            context.Response.Headers["X-Stderr"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(stderr));
            await context.Response.WriteAsync(stdout);
        });
    }

    // sizeBytes is the file size, not the memory footprint (capacity-signals §1.6); status and queued come from the
    // requests on the instance, queued including the ones being answered.
    private static string Ps(SimulatorState state) => JsonSerializer.Serialize(state.Instances().Select(i => new
    {
        type = i.Model.Type, modelKey = i.Model.Key, identifier = i.Id, path = i.Model.Path, format = "gguf", displayName = i.Model.Key,
        publisher = i.Model.Publisher, sizeBytes = i.Model.SizeBytes, contextLength = i.ContextLength, maxContextLength = 32768,
        ttlMs = (int?)null, lastUsedTime = (long?)null, status = Status(i), queued = i.Queued, parallel = i.Model.Type == "llm" ? i.Parallel : (int?)null,
    })) + "\n";

    private static string Status(SimulatorState.Instance instance) =>
        instance.InFlight == 0 ? "idle" : instance.Model.Type == "embedding" ? "computingEmbedding" : "generating";

    private static string Ls(SimulatorState state) => JsonSerializer.Serialize(state.Options.Models.Select(m => new
    {
        type = m.Type, modelKey = m.Key, path = m.Path, format = "gguf", displayName = m.Key, publisher = m.Publisher, sizeBytes = m.SizeBytes, maxContextLength = 32768,
    })) + "\n";

    private static async Task<(string Exit, string Stdout, string Stderr)> Load(SimulatorState state, List<string> args)
    {
        string? target = null, identifier = null;
        int? contextLength = null;
        bool yes = false, exact = false, estimateOnly = false;
        for (var i = 0; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "-y" or "--yes": yes = true; break;
                case "--exact": exact = true; break;
                case "--estimate-only": estimateOnly = true; break;
                case "--identifier": identifier = args[++i]; break;
                case "-c" or "--context-length": contextLength = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "--gpu" or "--ttl" or "--parallel" or "--host" or "--port": i++; break;
                case var flag when flag.StartsWith('-'): return ("1", "", $"error: unknown option '{flag}'");
                default: target = args[i]; break;
            }
        }
        if (target is null) return ("1", "", "error: no model given (the interactive picker needs a terminal)");

        List<SimModel> matches = exact
            ? [.. state.Options.Models.Where(m => m.Path == target)]
            // Fuzzy: every model whose key contains the query; the longer key sorts first, as the fuzzy score ties do.
            : [.. state.Options.Models.Where(m => m.Key.Contains(target, StringComparison.OrdinalIgnoreCase)).OrderByDescending(m => m.Key.Length)];
        if (matches.Count == 0) return ("1", "", exact ? "Model not found" : $"Model not found\nNo model found that matches model key \"{target}\"");
        if (matches.Count > 1 && !yes) return ("hang", "", "? Select a model to load (Use arrow keys)");

        if (estimateOnly) return ("0", "", Estimate(state, matches[0]));

        var started = DateTime.UtcNow;
        try
        {
            var instance = await state.LoadAsync(matches[0], identifier, contextLength);
            return ("0", "", $"Model loaded successfully in {(DateTime.UtcNow - started).TotalSeconds:0.00}s.\nTo use the model in the API/SDK, use the identifier \"{instance.Id}\".");
        }
        catch (ModelLoadRefusedException refused)
        {
            // lms prints the SDK's error to stderr and exits 1 (capacity-signals §1.4).
            return ("1", "", "Error: " + refused.Message);
        }
    }

    /// <summary>lms load --estimate-only: base-1024 units, always exit 0 (capacity-signals §1.4).</summary>
    private static string Estimate(SimulatorState state, SimModel model)
    {
        var gib = (model.SizeBytes * 1.15 / (1L << 30)).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
        var verdict = state.WouldFit(model) ? "may be loaded" : "will fail to load";
        return $"Estimated GPU Memory:   {gib} GiB\nEstimated Total Memory: {gib} GiB\nEstimate: This model {verdict} based on your resource guardrails settings.";
    }

    /// <summary>lms unload, by exact identifier, through the same unload as REST (in-flight requests are cut off).</summary>
    private static (string Exit, string Stdout, string Stderr) Unload(SimulatorState state, List<string> args)
    {
        var all = args.Contains("--all") || args.Contains("-a");
        var identifiers = args.Where((a, i) => !a.StartsWith('-') && (i == 0 || args[i - 1] is not ("--host" or "--port"))).ToList();
        // The quirks of contract §3.4 / capacity-signals §1.7: "not found" and "invalid usage" exit 0.
        if (all && identifiers.Count > 0) return ("0", "", "Invalid Usage: cannot specify both a model identifier and --all");
        if (all)
        {
            var loaded = state.Instances();
            if (loaded.Count == 0) return ("0", "", "No models to unload.");
            foreach (var instance in loaded) state.UnloadInstance(instance.Id);
            return ("0", "", string.Join("\n", loaded.Select(i => $"Unloaded \"{i.Id}\".")));
        }
        if (identifiers.Count == 0)
        {
            var loaded = state.Instances();
            if (loaded.Count == 0) return ("1", "", "You don't have any models loaded. Use \"lms load\" to load a model.");
            if (loaded.Count > 1) return ("hang", "", "? Select a model to unload (Use arrow keys)");
            identifiers.Add(loaded[0].Id);
        }
        var id = identifiers[0];
        return state.UnloadInstance(id)
            ? ("0", "", $"Model \"{id}\" unloaded.")
            : ("0", "", $"Model Not Found\nCannot find a model with the identifier \"{id}\"");
    }
}
