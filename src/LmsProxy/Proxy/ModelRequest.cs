using System.Buffers;
using System.Text;
using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Proxy;

/// <summary>An inference request, read whole so it can be re-sent: its body and the model it names.</summary>
/// <param name="Model">The LM Studio model the request goes to (after alias).</param>
/// <param name="RequestedModel">The name the client sent.</param>
public sealed record ModelRequest(string Model, string RequestedModel, byte[] Body);

public static class ModelRequestReader
{
    // The endpoints whose JSON body names a model that must be loaded first. Load/unload/download name
    // a model too, but those are requests *about* loading and pass through untouched.
    private static readonly HashSet<string> InferencePaths = new(StringComparer.OrdinalIgnoreCase)
    {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
        "/api/v0/chat/completions", "/api/v0/completions", "/api/v0/embeddings", "/api/v1/chat",
    };

    public static bool CarriesModel(HttpRequest request) =>
        HttpMethods.IsPost(request.Method) && InferencePaths.Contains(request.Path.Value!.TrimEnd('/'));

    /// <summary>Reads and checks the body; exactly one of the results is non-null.</summary>
    public static async Task<(ModelRequest? Request, ProxyError? Error)> ReadAsync(HttpRequest request, LmsProxyOptions options, CancellationToken cancellationToken)
    {
        var limit = options.MaxRequestBodyBytes;
        if (request.ContentLength > limit) return (null, TooLarge(limit));

        var body = await ReadBoundedAsync(request.Body, request.ContentLength, limit, cancellationToken);
        if (body is null) return (null, TooLarge(limit));

        var (model, span, problem) = FindModel(body);
        if (problem is not null) return (null, problem);
        if (ModelName.Problem(model) is { } nameProblem) return (null, ProxyError.BadRequest("invalid_model", "Invalid 'model': " + nameProblem));

        var target = options.ResolveAlias(model!);
        if (target != model) body = Replace(body, span, target);
        return (new ModelRequest(target, model!, body), null);
    }

    private static ProxyError TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, "request_too_large", $"The request body is larger than {limit} bytes (LmsProxy:MaxRequestBodyBytes).");

    private static async Task<byte[]?> ReadBoundedAsync(Stream stream, long? contentLength, long limit, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream(contentLength is > 0 and < int.MaxValue ? (int)contentLength : 4096);
        var chunk = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await stream.ReadAsync(chunk, cancellationToken)) > 0)
            {
                if (buffer.Length + read > limit) return null;
                buffer.Write(chunk, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        return buffer.ToArray();
    }

    /// <summary>Validates the whole document and finds the top-level "model" string and where its token lies.</summary>
    private static (string? Model, Range Span, ProxyError? Problem) FindModel(byte[] body)
    {
        if (body.Length == 0) return (null, default, ProxyError.BadRequest("invalid_json", "The request body is empty; a JSON object with a 'model' field is expected."));
        string? model = null;
        Range span = default;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 128 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return (null, default, ProxyError.BadRequest("invalid_json", "The request body must be a JSON object."));
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isModel = reader.ValueTextEquals("model"u8);
                reader.Read();
                if (!isModel)
                {
                    reader.Skip();
                    continue;
                }
                if (model is not null) return (null, default, ProxyError.BadRequest("invalid_model", "The request body names 'model' more than once."));
                if (reader.TokenType != JsonTokenType.String) return (null, default, ProxyError.BadRequest("invalid_model", $"'model' must be a string, not {Describe(reader.TokenType)}."));
                model = reader.GetString();
                span = new Range((int)reader.TokenStartIndex, (int)reader.BytesConsumed);
            }
            while (reader.Read())
            {
                // Only trailing whitespace may follow; anything else throws.
            }
        }
        catch (JsonException ex)
        {
            return (null, default, ProxyError.BadRequest("invalid_json", "The request body is not valid JSON: " + ex.Message));
        }
        return model is null
            ? (null, default, ProxyError.BadRequest("missing_model", "The request body has no 'model' field; name the model to use."))
            : (model, span, null);
    }

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.Number => "a number",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    private static byte[] Replace(byte[] body, Range span, string model)
    {
        var (start, length) = span.GetOffsetAndLength(body.Length);
        var replacement = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(model));
        var result = new byte[body.Length - length + replacement.Length];
        body.AsSpan(0, start).CopyTo(result);
        replacement.CopyTo(result.AsSpan(start));
        body.AsSpan(start + length).CopyTo(result.AsSpan(start + replacement.Length));
        return result;
    }
}
