using System.Text.Json.Nodes;

namespace LmStudioSimulator;

/// <summary>
/// What the 2026-12 addendum found in newer LM Studio builds (findings F16, F17, F20, F26): authentication that answers
/// 200 on /v1/*, Bionic's greeting and its 404/415 for unknown routes, and the decision endpoints.
/// </summary>
internal static class NewerLmStudio
{
    /// <summary>
    /// "Require Authentication" (F16). /lmstudio-greeting stays open (lms probes it without a token), the simulator's
    /// control paths too. /v1/messages also takes x-api-key (contract §1.3).
    /// </summary>
    public static Func<RequestDelegate, RequestDelegate> AuthGate(SimulatorState state, string controlPrefix) => next => context =>
    {
        var token = state.Options.RequireApiToken;
        var path = context.Request.Path;
        if (token is null || path == "/lmstudio-greeting" || path.StartsWithSegments(controlPrefix)) return next(context);
        var sent = context.Request.Headers.Authorization.FirstOrDefault() is { } auth && auth.StartsWith("Bearer ", StringComparison.Ordinal)
            ? auth["Bearer ".Length..].Trim()
            : context.Request.Headers["x-api-key"].FirstOrDefault();
        if (sent == token) return next(context);
        state.CountAuthRefusal();
        if (path.StartsWithSegments("/api/v1"))
        {
            var message = sent is null
                ? "An LM Studio API token is required to make requests to this server, but none was provided using the Authorization header using the 'Bearer' scheme."
                : "The provided LM Studio API token is invalid.";
            return Results.Json(new { error = new { type = "invalid_request", code = "invalid_api_key", message } }, statusCode: 401).ExecuteAsync(context);
        }
        // Reported as "Unexpected endpoint or method ... Returning 200 anyway" (F16).
        return SimulatorApp.UnexpectedEndpoint(context);
    };

    /// <summary>The identity probe; Bionic's extra fields are an ASSUMPTION (see <see cref="SimulatorOptions.Bionic"/>).</summary>
    public static IResult Greeting(SimulatorState state) => state.Options.Bionic
        ? Results.Json(new { lmstudio = true, app = "bionic", version = "1.1.0" })
        : Results.Json(new { lmstudio = true });

    /// <summary>An unknown route: LM Studio's 200 "Unexpected endpoint", or on Bionic 1.1.0 a 404, and 415 for multipart (F17).</summary>
    public static Task UnknownRoute(HttpContext context, SimulatorState state)
    {
        if (!state.Options.Bionic) return SimulatorApp.UnexpectedEndpoint(context);
        if (context.Request.ContentType?.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase) == true)
        {
            return Results.Json(new { error = "Unsupported Media Type" }, statusCode: 415).ExecuteAsync(context);
        }
        return Results.Json(new { error = $"Cannot {context.Request.Method} {context.Request.Path}" }, statusCode: 404).ExecuteAsync(context);
    }

    /// <summary>POST /v1/decisions (F20): input plus questions[] (predicate|choice|score) → answers[]; no streaming.</summary>
    public static Task Decisions(InferenceCall call)
    {
        if (call.Stream) return Results.Json(new { error = new { message = "Streaming is not supported for decisions.", type = "invalid_request_error" } }, statusCode: 400).ExecuteAsync(call.Context);
        var questions = call.Body["questions"] as JsonArray ?? [];
        var answers = questions.Select((q, i) => new { index = i, type = Json.String(q?["type"]) ?? "predicate", answer = Answer(Json.String(q?["type"])) });
        return Results.Json(new { @object = "decision", model = call.Model, answers }).ExecuteAsync(call.Context);
    }

    /// <summary>POST /v1/systemone (F20, TypeSafe-compatible): state plus a questions{} map (noul|choice|score) → answers{}.</summary>
    public static Task SystemOne(InferenceCall call)
    {
        if (call.Stream) return Results.Json(new { error = new { message = "Streaming is not supported.", type = "invalid_request_error" } }, statusCode: 400).ExecuteAsync(call.Context);
        var questions = call.Body["questions"] as JsonObject ?? [];
        var answers = questions.ToDictionary(q => q.Key, q => Answer(Json.String(q.Value?["type"])));
        return Results.Json(new { model = call.Model, answers }).ExecuteAsync(call.Context);
    }

    private static object Answer(string? type) => type switch
    {
        "score" => 0.5,
        "choice" => 0,
        _ => true,
    };
}
