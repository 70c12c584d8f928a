using System.Text.Json;
using System.Text.Json.Serialization;

namespace LmsProxy.Proxy;

/// <summary>An error the proxy answers itself, in OpenAI's shape: {"error":{"message","type","code"}}.</summary>
public sealed record ProxyError(int Status, string Code, string Message, TimeSpan? RetryAfter = null)
{
    public string Type => Status switch
    {
        StatusCodes.Status401Unauthorized => "authentication_error",
        < 500 => "invalid_request_error",
        _ => "server_error",
    };

    public async Task WriteAsync(HttpContext context)
    {
        if (context.Response.HasStarted) return;
        context.Response.Clear();
        context.Response.StatusCode = Status;
        if (Status == StatusCodes.Status401Unauthorized) context.Response.Headers.WWWAuthenticate = "Bearer";
        if (RetryAfter is { } wait) context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.ContentType = "application/json";
        var body = new ErrorBody(new ErrorDetail(Message, Type, Code));
        await JsonSerializer.SerializeAsync(context.Response.Body, body, ErrorJsonTypeInfo, context.RequestAborted);
    }

    // Messages are for people: keep quotes and apostrophes readable rather than \u0027-escaped.
    private static readonly System.Text.Json.Serialization.Metadata.JsonTypeInfo<ErrorBody> ErrorJsonTypeInfo =
        new ErrorJson(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }).ErrorBody;

    public static ProxyError BadRequest(string code, string message) => new(StatusCodes.Status400BadRequest, code, message);
}

public sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

public sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("code")] string Code);

[JsonSerializable(typeof(ErrorBody))]
internal sealed partial class ErrorJson : JsonSerializerContext;
