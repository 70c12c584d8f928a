using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Hosts;
using LmsProxy.Scheduling;

namespace LmsProxy.Proxy;

/// <summary>
/// A client's own POST /api/v1/models/load or /unload. With one host it goes there. With several it goes to the host
/// that has or may have the model (its list and its Models allow-list), or that holds the instance to unload, never
/// to whichever host is first; when several could, the client is told to choose (X-LmsProxy-Host) or to ask the proxy
/// (POST /models/{key}/load), rather than the proxy guessing behind the scheduler's back.
/// </summary>
internal static class ModelControl
{
    public const string HostHeader = "X-LmsProxy-Host";
    private const int MaxBodyBytes = 64 * 1024;

    /// <summary>The host to forward to, or null when the answer was written here.</summary>
    public static async Task<LmStudioHost?> ChooseHostAsync(HttpContext context, Scheduler scheduler, LmsProxyOptions options)
    {
        var hosts = scheduler.Hosts.Where(h => !h.Removed).ToList();
        if (hosts.Count <= 1) return scheduler.DefaultHost();

        // BufferedBody has read it whole already (under MaxRequestBodyBytes and the held-body budget): look, do not copy.
        if (context.Request.Body is not WholeBody body) return await AnswerAsync(context, ProxyError.BadRequest("invalid_request", "The request has no body."));
        if (body.Content.Length > MaxBodyBytes) return await AnswerAsync(context, new(StatusCodes.Status413PayloadTooLarge, "request_too_large", $"A load or unload request is at most {MaxBodyBytes} bytes."));

        if (context.Request.Headers[HostHeader].ToString() is { Length: > 0 } named)
        {
            return hosts.FirstOrDefault(h => string.Equals(h.Name, named, StringComparison.OrdinalIgnoreCase))
                ?? await AnswerAsync(context, new(StatusCodes.Status404NotFound, "unknown_host", $"No LM Studio host is named '{named}' ({string.Join(", ", hosts.Select(h => h.Name))})."));
        }
        var unload = context.Request.Path.Value!.TrimEnd('/').EndsWith("/unload", StringComparison.OrdinalIgnoreCase);
        var name = FieldOf(body.Content.Span, unload ? "instance_id" : "model");
        if (name is null) return await AnswerAsync(context, ProxyError.BadRequest("invalid_request", $"The body must be a JSON object with '{(unload ? "instance_id" : "model")}'."));

        List<LmStudioHost> candidates;
        if (unload)
        {
            candidates = [.. hosts.Where(h => h.Catalog.Models.Any(m => m.Instances.Any(i => string.Equals(i.Id, name, StringComparison.OrdinalIgnoreCase))))];
        }
        else
        {
            var key = scheduler.Catalog.Resolve(options.Loading.ResolveAlias(name))?.Key ?? name;
            candidates = [.. hosts.Where(h => h.Catalog.Resolve(key) is not null && h.Allows(key))];
        }
        return candidates.Count switch
        {
            1 => candidates[0],
            0 => await AnswerAsync(context, new(StatusCodes.Status404NotFound, "model_not_found", unload
                ? $"No LM Studio host has an instance '{name}' loaded."
                : $"No LM Studio host has '{name}' downloaded and may serve it (LmsProxy:Hosts:<name>:Models).")),
            _ => await AnswerAsync(context, new(StatusCodes.Status409Conflict, "ambiguous_host",
                $"Several LM Studio hosts could {(unload ? "unload" : "load")} '{name}' ({string.Join(", ", candidates.Select(h => h.Name))}). " +
                $"Name one with the {HostHeader} header, or let the proxy place it: POST /models/{{key}}/load.")),
        };
    }

    private static async Task<LmStudioHost?> AnswerAsync(HttpContext context, ProxyError error)
    {
        await error.WriteAsync(context);
        return null;
    }

    private static string? FieldOf(ReadOnlySpan<byte> body, string field)
    {
        try
        {
            var reader = new Utf8JsonReader(body);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var match = reader.ValueTextEquals(field);
                reader.Read();
                if (match) return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                reader.Skip();
            }
        }
        catch (JsonException)
        {
        }
        return null;
    }
}
