using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace LmStudioSimulator;

/// <summary>A fake LM Studio on a real socket: OpenAI-compatible endpoints, /api/v0 and /api/v1, load state, and lms emulation.</summary>
public sealed class SimulatorApp : IAsyncDisposable
{
    private readonly WebApplication _app;

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
        _ = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
            while (await timer.WaitForNextTickAsync(app.Lifetime.ApplicationStopping)) state.EvictIdle();
        });
        return sim;
    }

    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static void Map(WebApplication app, SimulatorState state)
    {
        app.MapGet("/lmstudio-greeting", () => Results.Json(new { lmstudio = true }));
        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            // JIT on lists every downloaded model; off, only the loaded ones (contract §1.2).
            data = (state.Options.Jit ? state.Options.Models.Select(m => m.Key) : state.Instances().Select(i => i.Id))
                .Select(id => new { id, @object = "model", owned_by = "organization_owner" }),
        }));
        app.MapGet("/api/v0/models", () => { state.CountCatalogRead(); return Results.Json(new
        {
            @object = "list",
            data = state.Options.Models.Select(m => new
            {
                id = m.Key, @object = "model", type = m.Type == "embedding" ? "embeddings" : "llm", publisher = m.Publisher,
                arch = "sim", compatibility_type = "gguf", quantization = "Q4_K_M",
                state = state.Instances().Any(i => i.Model == m) ? "loaded" : "not-loaded", max_context_length = 32768,
            }),
        }); });
        app.MapGet("/api/v1/models", () => { state.CountCatalogRead(); return Results.Json(new
        {
            models = state.Options.Models.Select(m => new
            {
                type = m.Type, publisher = m.Publisher, key = m.Key, display_name = m.Key, size_bytes = 1_000_000,
                loaded_instances = state.Instances().Where(i => i.Model == m).Select(i => new { id = i.Id, config = new { context_length = i.ContextLength } }),
                max_context_length = 32768, format = "gguf",
            }),
        }); });
        app.MapPost("/api/v1/models/load", async (HttpRequest request) =>
        {
            var body = await JsonNode.ParseAsync(request.Body);
            var key = body?["model"]?.GetValue<string>() ?? "";
            if (state.Options.Models.FirstOrDefault(m => m.Key == key) is not { } model)
            {
                return Results.Json(new { error = new { message = $"Model \"{key}\" not found", type = "model_not_found" } }, statusCode: 404);
            }
            var started = DateTime.UtcNow;
            var instance = await state.LoadAsync(model, null, body?["context_length"]?.GetValue<int>());
            return Results.Json(new { type = model.Type, instance_id = instance.Id, load_time_seconds = (DateTime.UtcNow - started).TotalSeconds, status = "loaded" });
        });
        app.MapPost("/api/v1/models/unload", async (HttpRequest request) =>
        {
            var body = await JsonNode.ParseAsync(request.Body);
            var id = body?["instance_id"]?.GetValue<string>() ?? "";
            return state.Evict(id) > 0 ? Results.Json(new { instance_id = id }) : Results.Json(new { error = new { message = $"No instance \"{id}\"" } }, statusCode: 404);
        });

        foreach (var prefix in new[] { "/v1", "/api/v0" })
        {
            app.MapPost(prefix + "/chat/completions", (HttpContext c) => Inference(c, state, Responses.Chat));
            app.MapPost(prefix + "/completions", (HttpContext c) => Inference(c, state, Responses.Completion));
            app.MapPost(prefix + "/embeddings", (HttpContext c) => Inference(c, state, Responses.Embeddings));
        }
        app.MapPost("/v1/responses", (HttpContext c) => Inference(c, state, Responses.Response));

        // Control, for tests and demos.
        app.MapPost("/_sim/evict", (string model) => Results.Json(new { evicted = state.Evict(model) }));
        app.MapGet("/_sim/stats", () => Results.Json(new
        {
            loads = state.Options.Models.ToDictionary(m => m.Key, m => state.LoadCount(m.Key)),
            instances = state.Instances().Select(i => i.Id),
            not_loaded_answers = state.NotLoadedAnswers,
            inference_requests = state.InferenceRequests,
        }));
        FakeLmsEndpoints.Map(app, state);

        // LM Studio answers unknown routes with 200 and an error string (contract §1.1).
        app.MapFallback((HttpContext c) => Results.Json(new { error = $"Unexpected endpoint or method. ({c.Request.Method} {c.Request.Path})" }));
    }

    private static async Task Inference(HttpContext context, SimulatorState state, Func<HttpContext, SimulatorState, JsonObject, string, Task> answer)
    {
        state.CountInference();
        JsonObject body;
        try
        {
            body = (await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted)) as JsonObject ?? throw new JsonException();
        }
        catch (JsonException)
        {
            await Results.Json(new { error = "Unexpected token in JSON" }, statusCode: 400).ExecuteAsync(context);
            return;
        }
        var name = body["model"]?.GetValue<string>() ?? "";
        var model = state.Find(name.Split('@')[0].Split(':')[0]);
        if (model is null)
        {
            var available = string.Join(", ", state.Options.Models.Select(m => m.Key));
            await Results.Json(new { error = new { message = $"Invalid model identifier \"{name}\". Please specify a valid downloaded model (e.g., {available}).", type = "invalid_request_error", param = "model", code = "model_not_found" } }, statusCode: 400).ExecuteAsync(context);
            return;
        }
        var instance = state.FindLoaded(name);
        if (instance is null && state.Options.Jit) instance = await state.JitLoadAsync(model);
        if (instance is null)
        {
            state.CountNotLoaded();
            await Results.Json(new { error = new { message = "No models loaded. Please load a model in the developer page or use the 'lms load' command.", type = "invalid_request_error", param = "model", code = (string?)null } },
                statusCode: state.Options.NotLoadedStatus).ExecuteAsync(context);
            return;
        }
        await answer(context, state, body, instance.Id);
    }
}
