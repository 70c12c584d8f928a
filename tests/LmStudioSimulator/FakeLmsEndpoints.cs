using System.Text;
using System.Text.Json;

namespace LmStudioSimulator;

/// <summary>
/// What the real lms would print and exit with, for the fake-lms/lms script (contract §3.3–3.4, addendum F1–F4, F10,
/// F11): JSON on stdout, prose on stderr, but the load spinner's ANSI frames on stdout too; fuzzy `load` matching,
/// `--exact` by path, variant keys refused, a duplicate ":2" instance when loading a loaded key, the interactive picker
/// (it reads stdin: a hang while stdin stays open, exit 1 at end of file) without -y, loads on LM Link's preferred
/// device without --local, Simplified Chinese on a zh locale unless LMS_LANG=en, an older lms's "unknown option",
/// the memory guardrail's refusal (exit 1), and unload by exact identifier.
/// </summary>
/// <remarks>
/// The answer streams as lines the script acts on as they come: "O base64" (stdout), "E base64" (stderr), "P" (the
/// picker reads stdin), "H" (hang), "X code" (exit). So the spinner reaches the caller while the load runs.
/// </remarks>
internal static class FakeLmsEndpoints
{
    private static readonly string[] Frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

    public static void Map(WebApplication app, SimulatorState state)
    {
        app.MapPost("/_sim/lms", async (HttpContext context) =>
        {
            var form = await context.Request.ReadFormAsync();
            var args = form["a"].Select(a => a ?? "").ToList();
            var zh = IsChinese(form["LMS_LANG"], form["LC_ALL"], form["LC_MESSAGES"], form["LANG"]);
            var lms = new LmsOutput(context.Response, zh);
            context.Response.ContentType = "text/plain";
            if (args.FirstOrDefault(a => state.Options.LmsUnknownFlags.Contains(a)) is { } unknown)
            {
                await lms.Fail(zh ? $"错误：未知选项 '{unknown}'" : $"error: unknown option '{unknown}'");
                return;
            }
            switch (args.FirstOrDefault())
            {
                case "ps": await lms.Out(Ps(state)); await lms.Exit(0); break;
                case "ls": await lms.Out(Ls(state)); await lms.Exit(0); break;
                case "load": await Load(state, lms, args.Skip(1).ToList(), context.RequestAborted); break;
                case "unload": await Unload(state, lms, args.Skip(1).ToList()); break;
                default: await lms.Fail($"error: unknown command '{args.FirstOrDefault()}'"); break;
            }
        });
    }

    /// <summary>F11: LMS_LANG, then LC_ALL/LC_MESSAGES/LANG, skipping a neutral C/POSIX locale.</summary>
    private static bool IsChinese(params string?[] settings)
    {
        foreach (var value in settings)
        {
            if (string.IsNullOrWhiteSpace(value) || value is "C" or "POSIX" || value.StartsWith("C.", StringComparison.Ordinal)) continue;
            return value.StartsWith("zh", StringComparison.OrdinalIgnoreCase);
        }
        return false;
    }

    private sealed class LmsOutput(HttpResponse response, bool zh)
    {
        public bool Zh { get; } = zh;

        public Task Out(string text) => Line("O " + Convert.ToBase64String(Encoding.UTF8.GetBytes(text)));

        public Task Err(string text) => Line("E " + Convert.ToBase64String(Encoding.UTF8.GetBytes(text.EndsWith('\n') ? text : text + "\n")));

        public Task Picker() => Line("P");

        public Task Hang() => Line("H");

        public Task Exit(int code) => Line("X " + code);

        public async Task Fail(string message)
        {
            await Err(message);
            await Exit(1);
        }

        private async Task Line(string line)
        {
            await response.WriteAsync(line + "\n");
            await response.Body.FlushAsync();
        }
    }

    // sizeBytes is the file size, not the memory footprint (capacity-signals §1.6); status and queued come from the
    // requests on the instance, queued including the ones being answered. Linked devices' instances are listed (F10).
    private static string Ps(SimulatorState state) => JsonSerializer.Serialize(state.Instances().Select(i => new
    {
        type = i.Model.Type, modelKey = i.Variant is not null && i.Id.Contains('@') ? i.Id.Split(':')[0] : i.Model.Key, identifier = i.Id, path = i.Model.Path,
        format = "gguf", displayName = i.Model.Key, publisher = i.Model.Publisher, sizeBytes = i.Model.SizeBytes, deviceIdentifier = i.DeviceIdentifier,
        quantization = new { name = SimulatorState.QuantizationOf(i.Variant), bits = 4 }, variants = i.Model.HasVariants ? i.Model.Variants : null,
        selectedVariant = i.Variant, contextLength = i.ContextLength, maxContextLength = 32768,
        ttlMs = (int?)null, lastUsedTime = (long?)null, status = Status(i), queued = i.Queued, parallel = i.Model.Type == "llm" ? i.Parallel : (int?)null,
    })) + "\n";

    private static string Status(SimulatorState.Instance instance) =>
        instance.InFlight == 0 ? "idle" : instance.Model.Type == "embedding" ? "computingEmbedding" : "generating";

    private static string Ls(SimulatorState state) => JsonSerializer.Serialize(state.Options.Models.Select(m => new
    {
        type = m.Type, modelKey = m.Key, path = m.Path, format = "gguf", displayName = m.Key, publisher = m.Publisher, sizeBytes = m.SizeBytes, maxContextLength = 32768,
        deviceIdentifier = (string?)null, variants = m.HasVariants ? m.Variants : null, selectedVariant = state.SelectedVariant(m),
    })) + "\n";

    private static async Task Load(SimulatorState state, LmsOutput lms, List<string> args, CancellationToken aborted)
    {
        string? target = null, identifier = null;
        int? contextLength = null, parallel = null;
        bool yes = false, exact = false, estimateOnly = false, local = false;
        for (var i = 0; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "-y" or "--yes": yes = true; break;
                case "--exact": exact = true; break;
                case "--local": local = true; break;
                case "--estimate-only": estimateOnly = true; break;
                case "--identifier": identifier = args[++i]; break;
                case "-c" or "--context-length": contextLength = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "--parallel": parallel = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "--gpu" or "--ttl" or "--host" or "--port": i++; break;
                case var flag when flag.StartsWith('-'):
                    await lms.Fail(lms.Zh ? $"错误：未知选项 '{flag}'" : $"error: unknown option '{flag}'");
                    return;
                default: target = args[i]; break;
            }
        }
        // Without -y, load prints an empty line to stdout first (F1, load.ts L449).
        if (!yes) await lms.Out("\n");
        if (target is null)
        {
            await lms.Picker();
            return;
        }

        // Fuzzy matching runs over base keys, so "key@quant" matches nothing (F3).
        List<SimModel> matches = exact
            ? [.. state.Options.Models.Where(m => m.Path == target)]
            // Fuzzy: every model whose key contains the query; the longer key sorts first, as the fuzzy score ties do.
            : [.. state.Options.Models.Where(m => m.Key.Contains(target, StringComparison.OrdinalIgnoreCase)).OrderByDescending(m => m.Key.Length)];
        if (!yes && (matches.Count == 0 || matches.Count > 1))
        {
            // F2: no match or several opens the picker instead of failing.
            if (matches.Count == 0) await lms.Out(lms.Zh ? $"! 找不到与 \"{target}\" 匹配的模型\n" : $"! Cannot find a model matching \"{target}\"\n");
            await lms.Err("? Select a model to load (Use arrow keys)");
            await lms.Picker();
            return;
        }
        if (matches.Count == 0)
        {
            await lms.Fail(lms.Zh ? "未找到模型" : exact ? "Model not found" : $"Model not found\nNo model found that matches model key \"{target}\"");
            return;
        }

        if (estimateOnly)
        {
            await lms.Err(Estimate(state, matches[0]));
            await lms.Exit(0);
            return;
        }

        // Without --local the load goes to LM Link's preferred device (F4).
        var device = local ? null : state.Options.PreferredDevice;
        var started = DateTime.UtcNow;
        var load = state.LoadAsync(matches[0], identifier, contextLength, aborted, parallel, device);
        await lms.Out("\u001b[?25l");
        for (var frame = 0; !load.IsCompleted; frame++)
        {
            var percent = Math.Min(state.Options.LoadStallsAt ?? 99, (int)((DateTime.UtcNow - started) / state.Options.LoadTime * 100));
            await lms.Out($"\r{(lms.Zh ? "正在加载" : "Loading")} {matches[0].Key} {percent}% {Frames[frame % Frames.Length]}");
            await Task.WhenAny(load, Task.Delay(80, aborted));
        }
        await lms.Out("\r\u001b[K\u001b[?25h");
        try
        {
            var instance = await load;
            var seconds = (DateTime.UtcNow - started).TotalSeconds.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
            var on = device is null ? "" : $" on {state.Options.LinkedDevices.FirstOrDefault(d => d.Identifier == device)?.Name ?? device}";
            await lms.Err(lms.Zh
                ? $"模型加载成功，用时 {seconds}s。\n要在 API/SDK 中使用该模型，请使用标识符 \"{instance.Id}\"。"
                : $"Model loaded successfully{on} in {seconds}s.\nTo use the model in the API/SDK, use the identifier \"{instance.Id}\".");
            await lms.Exit(0);
        }
        catch (ModelLoadRefusedException refused)
        {
            // lms prints the SDK's error to stderr and exits 1 (capacity-signals §1.4).
            await lms.Fail(lms.Zh ? "错误：由于系统资源不足，模型加载已停止。" : "Error: " + refused.Message);
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
    private static async Task Unload(SimulatorState state, LmsOutput lms, List<string> args)
    {
        var all = args.Contains("--all") || args.Contains("-a");
        var identifiers = args.Where((a, i) => !a.StartsWith('-') && (i == 0 || args[i - 1] is not ("--host" or "--port"))).ToList();
        // The quirks of contract §3.4 / capacity-signals §1.7: "not found" and "invalid usage" exit 0.
        if (all && identifiers.Count > 0)
        {
            await lms.Err("Invalid Usage: cannot specify both a model identifier and --all");
            await lms.Exit(0);
            return;
        }
        if (all)
        {
            // F10: --all reaches linked devices' instances too.
            var loaded = state.Instances();
            foreach (var instance in loaded) state.UnloadInstance(instance.Id);
            await lms.Err(loaded.Count == 0 ? "No models to unload." : string.Join("\n", loaded.Select(i => $"Unloaded \"{i.Id}\".")));
            await lms.Exit(0);
            return;
        }
        if (identifiers.Count == 0)
        {
            var loaded = state.Instances();
            if (loaded.Count == 0)
            {
                await lms.Fail("You don't have any models loaded. Use \"lms load\" to load a model.");
                return;
            }
            if (loaded.Count > 1)
            {
                await lms.Out("! To unload all models, use the --all flag.\n");
                await lms.Err("? Select a model to unload (Use arrow keys)");
                await lms.Picker();
                return;
            }
            identifiers.Add(loaded[0].Id);
        }
        var id = identifiers[0];
        await lms.Err(state.UnloadInstance(id)
            ? (lms.Zh ? $"模型 \"{id}\" 已卸载。" : $"Model \"{id}\" unloaded.")
            : $"Model Not Found\nCannot find a model with the identifier \"{id}\"");
        await lms.Exit(0);
    }
}
