using System.Text.Json;
using System.Text.Json.Serialization;

namespace LmsProxy.Proxy;

/// <summary>
/// An error the proxy answers itself, in the shape the client's SDK parses: OpenAI's {"error":{"message","type","code"}},
/// or Anthropic's {"type":"error","error":{"type","message"}} on /v1/messages.
/// </summary>
internal sealed record ProxyError(int Status, string Code, string Message, TimeSpan? RetryAfter = null)
{
    public string Type => Status switch
    {
        StatusCodes.Status401Unauthorized => "authentication_error",
        < 500 => "invalid_request_error",
        _ => "server_error",
    };

    /// <summary>Anthropic's error types by status (its SDKs map them to exception classes).</summary>
    public string AnthropicType => Status switch
    {
        StatusCodes.Status401Unauthorized => "authentication_error",
        StatusCodes.Status403Forbidden => "permission_error",
        StatusCodes.Status404NotFound => "not_found_error",
        StatusCodes.Status413PayloadTooLarge => "request_too_large",
        StatusCodes.Status429TooManyRequests => "rate_limit_error",
        StatusCodes.Status503ServiceUnavailable => "overloaded_error",
        < 500 => "invalid_request_error",
        _ => "api_error",
    };

    public static bool IsAnthropic(HttpRequest request) => request.Path.StartsWithSegments("/v1/messages", StringComparison.OrdinalIgnoreCase);

    public async Task WriteAsync(HttpContext context)
    {
        if (context.Response.HasStarted) return;
        context.Response.Clear();
        context.Response.StatusCode = Status;
        if (Status == StatusCodes.Status401Unauthorized) context.Response.Headers.WWWAuthenticate = "Bearer";
        if (RetryAfter is { } wait) context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(Serialize(IsAnthropic(context.Request)), context.RequestAborted);
    }

    /// <summary>The body alone, for an error that must travel inside a stream that has already started.</summary>
    public byte[] Serialize(bool anthropic) => anthropic
        ? JsonSerializer.SerializeToUtf8Bytes(new AnthropicErrorBody("error", new AnthropicErrorDetail(AnthropicType, Message)), Json.AnthropicErrorBody)
        : JsonSerializer.SerializeToUtf8Bytes(new ErrorBody(new ErrorDetail(Message, Type, Code)), Json.ErrorBody);

    // Messages are for people: keep quotes and apostrophes readable rather than \u0027-escaped.
    private static readonly ErrorJson Json = new(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    public static ProxyError BadRequest(string code, string message) => new(StatusCodes.Status400BadRequest, code, message);
}

internal sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

internal sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("code")] string Code);

internal sealed record AnthropicErrorBody(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("error")] AnthropicErrorDetail Error);

internal sealed record AnthropicErrorDetail(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("message")] string Message);

[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(AnthropicErrorBody))]
internal sealed partial class ErrorJson : JsonSerializerContext;
