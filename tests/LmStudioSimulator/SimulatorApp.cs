using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace LmStudioSimulator;

/// <summary>
/// A fake LM Studio on a real socket: OpenAI- and Anthropic-compatible endpoints, /api/v0 and /api/v1 (chat, models,
/// load, unload), WebSocket namespaces, load state with a memory guardrail, parallel slots, and lms emulation.
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
    internal static Task UnexpectedEndpoint(HttpContext context) =>
        Results.Json(new { error = $"Unexpected endpoint or method. ({context.Request.Method} {context.Request.Path}{context.Request.QueryString})" }).ExecuteAsync(context);

    private static void Map(WebApplication app, SimulatorState state)
    {
        app.Use((context, next) =>
        {
            state.ObserveRequest(context.Request.Path.Value ?? "", context.Request.Headers.Authorization.FirstOrDefault(),
                isControl: context.Request.Path.StartsWithSegments(ControlPrefix));
            return next(context);
        });
        app.UseWebSockets();

        app.MapGet("/lmstudio-greeting", () => Results.Json(new { lmstudio = true }));
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
        WebSocketEndpoints.Map(app, state);

        // Control, for tests and demos.
        app.MapPost(ControlPrefix + "/evict", (string model) => Results.Json(new { evicted = state.Evict(model) }));
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
        app.MapFallback(UnexpectedEndpoint);
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
                }),
            });
        });
        app.MapGet("/api/v1/models", () =>
        {
            state.CountCatalogRead();
            var instances = state.Instances();
            return Results.Json(new
            {
                models = state.Options.Models.Select(m => new
                {
                    type = m.Type, publisher = m.Publisher, key = m.Key, display_name = m.Key, size_bytes = m.SizeBytes,
                    loaded_instances = instances.Where(i => i.Model == m)
                        .Select(i => new { id = i.Id, config = new { context_length = i.ContextLength, parallel = i.Parallel } }),
                    max_context_length = 32768, format = "gguf",
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
            if (state.Options.Models.FirstOrDefault(m => m.Key == key) is not { } model)
            {
                return Results.Json(new { error = new { message = $"Model \"{key}\" not found", type = "model_not_found" } }, statusCode: 404);
            }
            var started = DateTime.UtcNow;
            SimulatorState.Instance instance;
            try
            {
                instance = await state.LoadAsync(model, null, Json.Int(body?["context_length"]));
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
            return Results.Json(loaded);
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
