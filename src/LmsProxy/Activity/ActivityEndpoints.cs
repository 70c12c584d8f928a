using System.Globalization;
using System.Text.Json;
using LmsProxy.Diagnostics;

namespace LmsProxy.Activity;

/// <summary>
/// GET /activity (the list, newest first, in flight included), GET /activity/stream (each change as a server-sent
/// event), GET /activity/{id} (one record, with captured bodies), POST /activity/{id}/cancel (an operator action:
/// the X-LmsProxy-Action header, like POST /models/...), GET /usage (per day, by model or key).
/// </summary>
internal static class ActivityEndpoints
{
    public const int MaxLimit = 1000;

    public static void MapActivityEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/activity", (HttpContext context, ActivityRecorder recorder) =>
        {
            var q = context.Request.Query;
            if (!TryQuery(q, out var query, out var problem)) return Results.Json(new ActionError(problem!), DiagnosticsJson.Default.ActionError, statusCode: StatusCodes.Status400BadRequest);
            return Results.Json(new ActivityList(recorder.List(query)), ActivityJson.Default.ActivityList);
        });
        app.MapGet("/activity/stream", StreamAsync);
        app.MapGet("/activity/{id:long}", (long id, ActivityRecorder recorder) =>
            recorder.Find(id) is { } record ? Results.Json(record, ActivityJson.Default.ActivityRecord) : Results.Json(new ActionError($"No request {id} is recorded."), DiagnosticsJson.Default.ActionError, statusCode: 404));
        app.MapPost("/activity/{id:long}/cancel", async (long id, HttpContext context, ActivityRecorder recorder) =>
        {
            if (!context.Request.Headers.ContainsKey(StatusEndpoints.ActionHeader))
            {
                return Results.Json(new ActionError($"Send the header {StatusEndpoints.ActionHeader}: 1 with operator actions."), DiagnosticsJson.Default.ActionError, statusCode: StatusCodes.Status400BadRequest);
            }
            return await recorder.CancelAsync(id)
                ? Results.Json(new CancelAccepted(id, true), ActivityEndpointsJson.Default.CancelAccepted, statusCode: StatusCodes.Status202Accepted)
                : Results.Json(new ActionError($"Request {id} is not in flight."), DiagnosticsJson.Default.ActionError, statusCode: StatusCodes.Status404NotFound);
        });
        app.MapGet("/usage", (HttpContext context, ActivityRecorder recorder, TimeProvider time) =>
        {
            var by = context.Request.Query["by"].ToString() is { Length: > 0 } b ? b : UsageTotals.ByModel;
            if (by is not (UsageTotals.ByModel or UsageTotals.ByKey)) return Results.Json(new ActionError("by: model or key."), DiagnosticsJson.Default.ActionError, statusCode: 400);
            var days = 7;
            if (context.Request.Query["days"].ToString() is { Length: > 0 } d && (!int.TryParse(d, CultureInfo.InvariantCulture, out days) || days is < 1 or > 3660))
            {
                return Results.Json(new ActionError("days: a whole number from 1 to 3660."), DiagnosticsJson.Default.ActionError, statusCode: 400);
            }
            return Results.Json(recorder.Usage.Report(by, days, time.GetUtcNow()), ActivityJson.Default.UsageReport);
        });
    }

    private static bool TryQuery(IQueryCollection q, out ActivityRecorder.Query query, out string? problem)
    {
        query = new(100, null, null, null, null);
        problem = null;
        var limit = 100;
        int? status = null;
        DateTimeOffset? since = null;
        if (q["limit"].ToString() is { Length: > 0 } l && (!int.TryParse(l, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxLimit)) problem = $"limit: a whole number from 1 to {MaxLimit}.";
        if (q["status"].ToString() is { Length: > 0 } s)
        {
            if (int.TryParse(s, CultureInfo.InvariantCulture, out var code)) status = code;
            else problem = "status: an HTTP status code, such as 200 or 503.";
        }
        if (q["since"].ToString() is { Length: > 0 } t)
        {
            if (DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)) since = at;
            else problem = "since: an ISO 8601 time, such as 2026-01-31T12:00:00Z.";
        }
        if (problem is not null) return false;
        query = new(limit, Empty(q["model"]), Empty(q["key"]), status, since);
        return true;
    }

    private static string? Empty(Microsoft.Extensions.Primitives.StringValues value) => value.ToString() is { Length: > 0 } text ? text : null;

    private static async Task StreamAsync(HttpContext context, ActivityRecorder recorder)
    {
        var aborted = context.RequestAborted;
        var changes = recorder.Subscribe(aborted);
        await ServerSentEvents.BeginAsync(context.Response, "activity", aborted);
        try
        {
            await foreach (var record in changes.ReadAllAsync(aborted))
            {
                var json = JsonSerializer.Serialize(record, ActivityJson.Default.ActivityRecord);
                await ServerSentEvents.WriteAsync(context.Response, record.State == ActivityState.Done ? "done" : "update", json, aborted, flush: !changes.TryPeek(out _));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The reader left.
        }
    }
}

internal sealed record CancelAccepted(long Id, bool Cancelled);

/// <summary>The activity endpoints' own small answers (source-generated, for the Native AOT build).</summary>
[System.Text.Json.Serialization.JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[System.Text.Json.Serialization.JsonSerializable(typeof(CancelAccepted))]
internal sealed partial class ActivityEndpointsJson : System.Text.Json.Serialization.JsonSerializerContext;
