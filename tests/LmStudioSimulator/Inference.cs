using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LmStudioSimulator;

/// <summary>How an endpoint family words its errors: OpenAI-compatible, Anthropic-compatible, or LM Studio's own v1 REST.</summary>
internal enum ApiDialect { OpenAi, Anthropic, NativeV1 }

/// <summary>An inference request admitted onto a loaded instance and holding one of its parallel slots.</summary>
/// <param name="Model">The instance id that answers.</param>
/// <param name="JitLoadTime">How long the JIT load this request caused took; null when the model was loaded already.</param>
internal sealed record InferenceCall(HttpContext Context, SimulatorState State, JsonObject Body, string Model, TimeSpan? JitLoadTime)
{
    public bool Stream => Json.Bool(Body["stream"]) == true;
    public CancellationToken Aborted => Context.RequestAborted;
    public SimulatorOptions Options => State.Options;
}

/// <summary>
/// What every inference endpoint does before it answers, as LM Studio does it: find the model, JIT-load it or refuse
/// ("No models loaded"), wait for a free slot on the instance, and get cut off if the instance is unloaded meanwhile.
/// </summary>
internal static class InferenceEndpoint
{
    public const string NotLoadedMessage = "No models loaded. Please load a model in the developer page or use the 'lms load' command.";

    public static async Task Handle(HttpContext context, SimulatorState state, ApiDialect dialect, Func<InferenceCall, Task> answer)
    {
        state.CountInference();
        if (await ReadBodyAsync(context) is not { } body)
        {
            await BadJson(dialect).ExecuteAsync(context);
            return;
        }
        if (state.Options.AbortRequestsContaining is { } poison && body.ToJsonString().Contains(poison, StringComparison.Ordinal))
        {
            state.CountPoisoned();
            context.Abort();
            return;
        }
        var name = Json.String(body["model"]) ?? "";
        if (state.Find(name.Split('@')[0].Split(':')[0]) is not { } model)
        {
            await UnknownModel(dialect, name, state).ExecuteAsync(context);
            return;
        }

        var lease = state.Admit(name, context.Abort);
        TimeSpan? jitLoadTime = null;
        if (lease is null && state.Options.Jit)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                var instance = await state.JitLoadAsync(model);
                jitLoadTime = Stopwatch.GetElapsedTime(started);
                lease = state.Admit(instance, context.Abort);
            }
            catch (ModelLoadRefusedException)
            {
                await JitLoadFailed(dialect, model.Key).ExecuteAsync(context);
                return;
            }
        }
        if (lease is null)
        {
            state.CountNotLoaded();
            await NotLoaded(dialect, state.Options.NotLoadedStatus).ExecuteAsync(context);
            return;
        }

        using (lease)
        {
            try
            {
                await lease.WaitForSlotAsync(context.RequestAborted);
                var call = new InferenceCall(context, state, body, lease.Instance.Id, jitLoadTime);
                if (!call.Stream && state.Options.ResponseDelay > TimeSpan.Zero)
                {
                    var jitter = state.Options.ResponseJitter * (2 * Random.Shared.NextDouble() - 1);
                    await Task.Delay(state.Options.ResponseDelay * (1 + jitter), context.RequestAborted);
                }
                if (call.Stream) await answer(call);
                else await AnswerWholeAsync(context, () => answer(call));
            }
            catch (Exception) when (context.RequestAborted.IsCancellationRequested)
            {
                state.CountAborted();
                // The client left, or an unload cut the request off: the connection is gone, nothing more to write.
            }
        }
    }

    /// <summary>
    /// A whole answer as LM Studio's server (Express, res.json) sends it: complete, in one write, with a Content-Length.
    /// Written chunked instead (ASP.NET's Results.Json), an unload between the body and its closing chunk cut off an
    /// answer LM Studio would have delivered whole.
    /// </summary>
    private static async Task AnswerWholeAsync(HttpContext context, Func<Task> answer)
    {
        var socket = context.Response.Body;
        using var whole = new MemoryStream();
        context.Response.Body = whole;
        try
        {
            await answer();
        }
        finally
        {
            context.Response.Body = socket;
        }
        context.Response.ContentLength = whole.Length;
        await socket.WriteAsync(whole.GetBuffer().AsMemory(0, (int)whole.Length), context.RequestAborted);
    }

    private static async Task<JsonObject?> ReadBodyAsync(HttpContext context)
    {
        try
        {
            return await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static IResult BadJson(ApiDialect dialect) => dialect switch
    {
        ApiDialect.OpenAi => Results.Json(new { error = "Unexpected token in JSON" }, statusCode: 400),
        _ => Error(dialect, 400, "invalid_request", "Unexpected token in JSON"),
    };

    private static IResult UnknownModel(ApiDialect dialect, string name, SimulatorState state)
    {
        var available = string.Join(", ", state.Options.Models.Select(m => m.Key));
        var message = $"Invalid model identifier \"{name}\". Please specify a valid downloaded model (e.g., {available}).";
        return dialect == ApiDialect.OpenAi
            ? Results.Json(new { error = new { message, type = "invalid_request_error", param = "model", code = "model_not_found" } }, statusCode: 400)
            : Error(dialect, 400, "model_not_found", message);
    }

    private static IResult NotLoaded(ApiDialect dialect, int status) => dialect == ApiDialect.OpenAi
        ? Results.Json(new { error = new { message = NotLoadedMessage, type = "invalid_request_error", param = "model", code = (string?)null } }, statusCode: status)
        : Error(dialect, status, "invalid_request", NotLoadedMessage);

    // capacity-signals §1.5: current builds answer a JIT load the guardrail refused with 400 and this text.
    private static IResult JitLoadFailed(ApiDialect dialect, string key)
    {
        var message = $"Failed to load model \"{key}\". Error: {ModelLoadRefusedException.ShortMessage}";
        return dialect == ApiDialect.OpenAi
            ? Results.Json(new { error = new { message, type = "invalid_request_error" } }, statusCode: 400)
            : Error(dialect, 400, "model_load_failed", message);
    }

    /// <summary>
    /// An error in the dialect's envelope. Anthropic's is {"type":"error","error":{type,message}} with its own type
    /// names; LM Studio's v1 REST uses {"error":{type,message}} with the types streaming-events.md lists.
    /// </summary>
    public static IResult Error(ApiDialect dialect, int status, string v1Type, string message) => dialect switch
    {
        ApiDialect.Anthropic => Results.Json(new { type = "error", error = new { type = "invalid_request_error", message } }, statusCode: status),
        ApiDialect.NativeV1 => Results.Json(new { error = new { type = v1Type, message } }, statusCode: status),
        _ => Results.Json(new { error = new { message, type = "invalid_request_error" } }, statusCode: status),
    };
}

/// <summary>Lenient reads of request JSON: a wrong type is treated as absent, as a 500 would not be LM Studio-like.</summary>
internal static class Json
{
    public static string? String(JsonNode? node) => node is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    public static bool? Bool(JsonNode? node) => node is JsonValue value && value.TryGetValue<bool>(out var flag) ? flag : null;

    public static int? Int(JsonNode? node) => node is JsonValue value && value.TryGetValue<int>(out var number) ? number : null;

    /// <summary>About one token per four characters of the request, at least one: enough for usage fields.</summary>
    public static int EstimateTokens(JsonNode? node) => Math.Max(1, (node?.ToJsonString().Length ?? 0) / 4);
}
