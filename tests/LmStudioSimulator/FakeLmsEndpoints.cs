using System.Text;
using System.Text.Json;

namespace LmStudioSimulator;

/// <summary>
/// What the real lms would print and exit with, for the fake-lms/lms script (contract §3.3–3.4): JSON on stdout,
/// prose on stderr, fuzzy `load` matching, `--exact` by path, a duplicate ":2" instance when loading a loaded key,
/// and an interactive prompt (a hang) when several models match without -y.
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

    private static string Ps(SimulatorState state) => JsonSerializer.Serialize(state.Instances().Select(i => new
    {
        type = i.Model.Type, modelKey = i.Model.Key, identifier = i.Id, path = i.Model.Path, format = "gguf", displayName = i.Model.Key,
        publisher = i.Model.Publisher, sizeBytes = 1_000_000, contextLength = i.ContextLength, maxContextLength = 32768,
        ttlMs = (int?)null, lastUsedTime = (long?)null, status = "idle", queued = 0, parallel = i.Model.Type == "llm" ? 4 : (int?)null,
    })) + "\n";

    private static string Ls(SimulatorState state) => JsonSerializer.Serialize(state.Options.Models.Select(m => new
    {
        type = m.Type, modelKey = m.Key, path = m.Path, format = "gguf", displayName = m.Key, publisher = m.Publisher, sizeBytes = 1_000_000, maxContextLength = 32768,
    })) + "\n";

    private static async Task<(string Exit, string Stdout, string Stderr)> Load(SimulatorState state, List<string> args)
    {
        string? target = null, identifier = null;
        int? contextLength = null;
        bool yes = false, exact = false;
        for (var i = 0; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "-y" or "--yes": yes = true; break;
                case "--exact": exact = true; break;
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

        var started = DateTime.UtcNow;
        var instance = await state.LoadAsync(matches[0], identifier, contextLength);
        return ("0", "", $"Model loaded successfully in {(DateTime.UtcNow - started).TotalSeconds:0.00}s.\nTo use the model in the API/SDK, use the identifier \"{instance.Id}\".");
    }

    private static (string Exit, string Stdout, string Stderr) Unload(SimulatorState state, List<string> args)
    {
        if (args.Count == 0) return ("1", "", "error: no model given");
        // lms unload exits 0 even when nothing matched (contract §3.4).
        return ("0", "", state.Evict(args[0]) > 0 ? $"Model \"{args[0]}\" unloaded." : "Model Not Found");
    }
}
