using System.Globalization;
using System.Text.Json;
using LmsProxy.Diagnostics;

namespace LmsProxy.Activity;

/// <summary>
/// GET /activity (the list, newest first, in flight included), GET /activity/stream (each change as a server-sent
/// event), GET /activity/{id} (one record, with captured bodies), POST /activity/{id}/cancel (an operator action:
/// the X-LmsProxy-Action header, like POST /models/...), GET /usage (per day, by model or key). An inference key sees
/// its own requests and its own row by key; operator keys (and OpenStatus without a key) see every key's.
/// </summary>
internal static class ActivityEndpoints
{
    public const int MaxLimit = 1000;

    public static void MapActivityEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/activity", (HttpContext context, ActivityRecorder recorder) =>
        {
            var q = context.Request.Query;
            if (!TryQuery(q, out var query, out var problem)) return Results.Json(new ActivityError(problem), ActivityJson.Default.ActivityError, statusCode: StatusCodes.Status400BadRequest);
            if (OwnOnly(context) is { } own) query = query with { Key = own };
            return Results.Json(new ActivityList(recorder.List(query)), ActivityJson.Default.ActivityList);
        });
        app.MapGet("/activity/stream", StreamAsync);
        app.MapGet("/activity/{id:long}", (long id, HttpContext context, ActivityRecorder recorder) =>
            recorder.Find(id) is { } record && (OwnOnly(context) is not { } own || record.Key == own)
                ? Results.Json(record, ActivityJson.Default.ActivityRecord)
                : Results.Json(new ActivityError($"No request {id} is recorded."), ActivityJson.Default.ActivityError, statusCode: 404));
        app.MapPost("/activity/{id:long}/cancel", async (long id, HttpContext context, ActivityRecorder recorder) =>
        {
            if (!context.Request.Headers.ContainsKey(StatusEndpoints.ActionHeader))
            {
                return Results.Json(new ActivityError($"Send the header {StatusEndpoints.ActionHeader}: 1 with operator actions."), ActivityJson.Default.ActivityError, statusCode: StatusCodes.Status400BadRequest);
            }
            return await recorder.CancelAsync(id)
                ? Results.Json(new CancelAccepted(id, true), ActivityJson.Default.CancelAccepted, statusCode: StatusCodes.Status202Accepted)
                : Results.Json(new ActivityError($"Request {id} is not in flight."), ActivityJson.Default.ActivityError, statusCode: StatusCodes.Status404NotFound);
        });
        app.MapGet("/usage", (HttpContext context, ActivityRecorder recorder, TimeProvider time) =>
        {
            var by = context.Request.Query["by"].ToString() is { Length: > 0 } b ? b : UsageTotals.ByModel;
            if (by is not (UsageTotals.ByModel or UsageTotals.ByKey)) return Results.Json(new ActivityError("by: model or key."), ActivityJson.Default.ActivityError, statusCode: 400);
            var days = 7;
            if (context.Request.Query["days"].ToString() is { Length: > 0 } d && (!int.TryParse(d, CultureInfo.InvariantCulture, out days) || days is < 1 or > 3660))
            {
                return Results.Json(new ActivityError("days: a whole number from 1 to 3660."), ActivityJson.Default.ActivityError, statusCode: 400);
            }
            var report = recorder.Usage.Report(by, days, time.GetUtcNow());
            if (by == UsageTotals.ByKey && OwnOnly(context) is { } own) report = report with { Usage = [.. report.Usage.Where(e => e.Name == own)] };
            return Results.Json(report, ActivityJson.Default.UsageReport);
        });
    }

    /// <summary>The caller's key name when it is an inference key (it sees only its own), else null.</summary>
    private static string? OwnOnly(HttpContext context) => Keys.ApiKey.Of(context) is { IsOperator: false } key ? key.Name : null;

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
        var own = OwnOnly(context);
        await ServerSentEvents.BeginAsync(context.Response, "activity", aborted);
        try
        {
            await foreach (var record in changes.ReadAllAsync(aborted))
            {
                if (own is null || record.Key == own)
                {
                    var json = JsonSerializer.Serialize(record, ActivityJson.Default.ActivityRecord);
                    await ServerSentEvents.WriteAsync(context.Response, record.State == ActivityState.Done ? "done" : "update", json, aborted, flush: !changes.TryPeek(out _));
                }
                else if (!changes.TryPeek(out _))
                {
                    await context.Response.Body.FlushAsync(aborted);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The reader left.
        }
    }
}
