using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace LmStudioSimulator;

/// <summary>
/// A fake LM Studio on a real socket: OpenAI- and Anthropic-compatible endpoints, /api/v0 and /api/v1 (chat, models,
/// load, unload), WebSocket namespaces, load state with a memory guardrail, parallel slots, and lms emulation; and what
/// newer builds do (addendum): variant keys, auth that answers 200, Bionic, AutoFit, LM Link, the decision endpoints.
/// </summary>
public sealed class SimulatorApp : IAsyncDisposable
{
    private const string ControlPrefix = "/_sim";

    private readonly WebApplication _app;
    private bool _killed;
    private bool _disposed;

    private SimulatorApp(WebApplication app, SimulatorState state)
    {
        _app = app;
        State = state;
    }

    public SimulatorState State { get; }

    public Uri Url { get; private set; } = null!;

    public static async Task<SimulatorApp> StartAsync(SimulatorOptions options, string url = "http://127.0.0.1:0")
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        var state = new SimulatorState(options);
        var app = builder.Build();
        Map(app, state);
        await app.StartAsync();
        var sim = new SimulatorApp(app, state);
        sim.Url = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        _ = EvictIdleUntilStoppedAsync(state, app.Lifetime.ApplicationStopping);
        return sim;
    }

    private static async Task EvictIdleUntilStoppedAsync(SimulatorState state, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            while (await timer.WaitForNextTickAsync(stopping)) state.EvictIdle();
        }
        catch (OperationCanceledException)
        {
        }
    }

    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    /// <summary>
    /// Stops at once, like a machine that dies: open connections (streams, WebSockets) are dropped without an answer
    /// and the port refuses connections from then on. Kestrel aborts every connection when its stop token is cancelled.
    /// </summary>
    public async Task KillAsync()
    {
        if (_killed) return;
        _killed = true;
        using var alreadyCancelled = new CancellationTokenSource();
        await alreadyCancelled.CancelAsync();
        await _app.Services.GetRequiredService<IServer>().StopAsync(alreadyCancelled.Token);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        // After a kill the server is stopped already; the host's own stop then finds nothing to wait for.
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    /// <summary>LM Studio answers unknown routes with 200 and an error string (contract §1.1).</summary>
    /// <remarks>With a Content-Length, as Express's res.json sends it.</remarks>
    internal static Task UnexpectedEndpoint(HttpContext context)
    {
        var body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new { error = $"Unexpected endpoint or method. ({context.Request.Method} {context.Request.Path}{context.Request.QueryString})" });
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.ContentLength = body.Length;
        return context.Response.Body.WriteAsync(body).AsTask();
    }

    private static void Map(WebApplication app, SimulatorState state)
    {
        app.Use((context, next) =>
        {
            state.ObserveRequest(context.Request.Path.Value ?? "", context.Request.Headers.Authorization.FirstOrDefault(),
                isControl: context.Request.Path.StartsWithSegments(ControlPrefix));
            return next(context);
        });
        app.Use(NewerLmStudio.AuthGate(state, ControlPrefix));
        app.UseWebSockets();

        app.MapGet("/lmstudio-greeting", () => NewerLmStudio.Greeting(state));
        MapCatalog(app, state);
        MapLoadAndUnload(app, state);

        foreach (var prefix in new[] { "/v1", "/api/v0" })
        {
            app.MapPost(prefix + "/chat/completions", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.OpenAi, Responses.Chat));
            app.MapPost(prefix + "/completions", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.OpenAi, Responses.Completion));
            app.MapPost(prefix + "/embeddings", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.OpenAi, Responses.Embeddings));
        }
        app.MapPost("/v1/responses", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.OpenAi, Responses.Response));
        app.MapPost("/v1/messages", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.Anthropic, AnthropicMessages.Messages));
        app.MapPost("/api/v1/chat", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.NativeV1, NativeChat.Chat));
        app.MapPost("/v1/decisions", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.OpenAi, NewerLmStudio.Decisions));
        app.MapPost("/v1/systemone", (HttpContext c) => InferenceEndpoint.Handle(c, state, ApiDialect.OpenAi, NewerLmStudio.SystemOne));
        WebSocketEndpoints.Map(app, state);

        // Control, for tests and demos.
        app.MapPost(ControlPrefix + "/evict", (string model) => Results.Json(new { evicted = state.Evict(model) }));
        app.MapPost(ControlPrefix + "/select-variant", (string variant) =>
        {
            state.SelectVariant(state.Find(variant.Split('@')[0])!, variant);
            return Results.Json(new { selected = variant });
        });
        app.MapGet(ControlPrefix + "/stats", () => Results.Json(new
        {
            loads = state.Options.Models.ToDictionary(m => m.Key, m => state.LoadCount(m.Key)),
            in_flight = state.Options.Models.ToDictionary(m => m.Key, m => state.InFlight(m.Key)),
            instances = state.Instances().Select(i => i.Id),
            not_loaded_answers = state.NotLoadedAnswers,
            inference_requests = state.InferenceRequests,
            cut_off = state.CutOffRequests,
            aborted = state.AbortedRequests,
            refused_loads = state.RefusedLoads,
            unload_requests = state.UnloadRequests,
            peak_loaded_bytes = state.PeakLoadedBytes,
        }));
        FakeLmsEndpoints.Map(app, state);

        // count_tokens lands here too: LM Studio does not implement it (capacity-signals §4).
        app.MapFallback((HttpContext c) => NewerLmStudio.UnknownRoute(c, state));
    }

    private static void MapCatalog(WebApplication app, SimulatorState state)
    {
        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            // JIT on lists every downloaded model; off, only the loaded ones (contract §1.2).
            data = (state.Options.Jit ? state.Options.Models.Select(m => m.Key) : state.Instances().Select(i => i.Id))
                .Select(id => new { id, @object = "model", owned_by = "organization_owner" }),
        }));
        app.MapGet("/api/v0/models", () =>
        {
            state.CountCatalogRead();
            var instances = state.Instances();
            return Results.Json(new
            {
                @object = "list",
                data = state.Options.Models.Select(m => new
                {
                    id = m.Key, @object = "model", type = m.Type == "embedding" ? "embeddings" : "llm", publisher = m.Publisher,
                    arch = "sim", compatibility_type = "gguf", quantization = "Q4_K_M",
                    state = instances.Any(i => i.Model == m) ? "loaded" : "not-loaded", max_context_length = 32768,
                    loaded_context_length = instances.FirstOrDefault(i => i.Model == m)?.ContextLength,
                }),
            });
        });
        app.MapGet("/api/v1/models", () =>
        {
            state.CountCatalogRead();
            // Linked devices' instances only when the option says so (F21); variant-keyed ones hidden under F15's option.
            var instances = state.Instances().Where(i => (i.IsLocal || state.Options.LinkedInstancesInV1) &&
                !(state.Options.HideVariantInstancesFromV1 && i.Id.Contains('@'))).ToList();
            return Results.Json(new
            {
                models = state.Options.Models.Select(m => new
                {
                    type = m.Type, publisher = m.Publisher, key = m.Key, display_name = m.Key, size_bytes = m.SizeBytes,
                    quantization = new { name = SimulatorState.QuantizationOf(state.SelectedVariant(m)), bits_per_weight = 4 },
                    loaded_instances = instances.Where(i => i.Model == m)
                        .Select(i => new { id = i.Id, config = new { context_length = i.ContextLength, parallel = i.Parallel } }),
                    max_context_length = 32768, format = "gguf",
                    variants = m.HasVariants ? m.Variants : null,
                    selected_variant = state.SelectedVariant(m),
                }),
            });
        });
    }

    private static void MapLoadAndUnload(WebApplication app, SimulatorState state)
    {
        app.MapPost("/api/v1/models/load", async (HttpRequest request) =>
        {
            var body = await JsonNode.ParseAsync(request.Body);
            var key = Json.String(body?["model"]) ?? "";
            // Only a base key loads; "key@quant" and selected_variant values are refused (F3, F13: 404 model_not_found).
            if (state.Options.Models.FirstOrDefault(m => m.Key == key) is not { } model)
            {
                return Results.Json(new { error = new { type = "model_not_found", message = $"Model {key} not found in downloaded models" } }, statusCode: 404);
            }
            var started = DateTime.UtcNow;
            SimulatorState.Instance instance;
            try
            {
                // No parallel here: REST loads get the fixed default (F14), and go to LM Link's preferred device (F21).
                instance = await state.LoadAsync(model, null, Json.Int(body?["context_length"]), device: state.Options.PreferredDevice);
            }
            catch (ModelLoadRefusedException refused)
            {
                return Results.Json(new { error = new { type = "model_load_failed", message = refused.Message } }, statusCode: state.Options.LoadRefusalStatus);
            }
            var loaded = new JsonObject
            {
                ["type"] = model.Type, ["instance_id"] = instance.Id, ["load_time_seconds"] = (DateTime.UtcNow - started).TotalSeconds, ["status"] = "loaded",
            };
            // load_config is there only when asked for (docs: load.md).
            if (Json.Bool(body?["echo_load_config"]) == true)
            {
                loaded["load_config"] = new JsonObject { ["context_length"] = instance.ContextLength, ["parallel"] = instance.Parallel };
            }
            return state.Options.LoadAnswerCharset is { } charset
                ? Results.Bytes(System.Text.Encoding.UTF8.GetBytes(loaded.ToJsonString()), $"application/json; charset={charset}")
                : Results.Json(loaded);
        });
        app.MapPost("/api/v1/models/unload", async (HttpRequest request) =>
        {
            var body = await JsonNode.ParseAsync(request.Body);
            var id = Json.String(body?["instance_id"]) ?? "";
            return state.UnloadInstance(id)
                ? Results.Json(new { instance_id = id })
                : Results.Json(new { error = new { type = "model_not_found", message = $"No loaded model instance with id \"{id}\"." } }, statusCode: 404);
        });
    }
}
