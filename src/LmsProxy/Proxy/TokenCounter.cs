using System.Text.Json;
using LmsProxy.Configuration;

namespace LmsProxy.Proxy;

/// <summary>
/// POST /v1/messages/count_tokens: LM Studio does not implement it and answers 200 with an error body, which Anthropic
/// clients (coding agents call it often) misread as a count. The proxy answers itself, in Anthropic's shape, with an
/// honest estimate: about one token per four characters of the text in system, messages and tools, as the response
/// header X-LmsProxy-Estimate says. It never loads a model for this.
/// </summary>
internal static class TokenCounter
{
    public static async Task AnswerAsync(HttpContext context, LmsProxyOptions options)
    {
        if (context.Request.ContentLength > options.Forwarding.MaxRequestBodyBytes)
        {
            await new ProxyError(StatusCodes.Status413PayloadTooLarge, "request_too_large", $"The request body is larger than {options.Forwarding.MaxRequestBodyBytes} bytes (LmsProxy:MaxRequestBodyBytes).").WriteAsync(context);
            return;
        }
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        }
        catch (JsonException ex)
        {
            await ProxyError.BadRequest("invalid_json", "The request body is not valid JSON: " + ex.Message).WriteAsync(context);
            return;
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array)
            {
                await ProxyError.BadRequest("invalid_request", "messages: a list of messages is required.").WriteAsync(context);
                return;
            }
            long characters = 0;
            foreach (var part in new[] { "system", "messages", "tools" })
            {
                if (document.RootElement.TryGetProperty(part, out var value)) characters += TextLength(value);
            }
            context.Response.Headers["X-LmsProxy-Estimate"] = "chars/4";
            await Results.Json(new TokenCount(Math.Max(1, (characters + 3) / 4)), ProxyJson.Default.TokenCount).ExecuteAsync(context);
        }
    }

    /// <summary>Characters of text in a JSON value: strings count whole, structure counts only its keys' names.</summary>
    private static long TextLength(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString()!.Length,
        JsonValueKind.Array => element.EnumerateArray().Sum(TextLength),
        JsonValueKind.Object => element.EnumerateObject().Sum(p => p.Name is "type" or "role" or "cache_control" ? 0 : TextLength(p.Value)),
        _ => 0,
    };
}
