using System.Buffers;
using System.Text;
using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Proxy;

/// <summary>
/// An inference request, read whole so it can be re-sent: its body (in a pooled buffer, returned on dispose) and what
/// the proxy needs from it: the model, whether it streams, and the conversation it continues.
/// </summary>
public sealed class ModelRequest : IDisposable
{
    private byte[]? _buffer;

    internal ModelRequest(byte[] buffer, int length, string model, string requestedModel, bool stream, string? previousResponseId)
    {
        _buffer = buffer;
        Length = length;
        Model = model;
        RequestedModel = requestedModel;
        Stream = stream;
        PreviousResponseId = previousResponseId;
    }

    /// <summary>The LM Studio model the request goes to (after alias).</summary>
    public string Model { get; }

    /// <summary>The name the client sent.</summary>
    public string RequestedModel { get; }

    public bool Stream { get; }

    /// <summary>previous_response_id (Responses API, LM Studio's /api/v1/chat): the conversation lives where that response was made.</summary>
    public string? PreviousResponseId { get; }

    public int Length { get; }

    public ReadOnlyMemory<byte> Body => _buffer.AsMemory(0, Length);

    /// <summary>A fresh read-only stream over the body, for one forward.</summary>
    public Stream OpenBody() => new WholeBody(_buffer!, Length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer) ArrayPool<byte>.Shared.Return(buffer);
    }
}

/// <summary>A request body the proxy holds whole; <see cref="UpstreamInvoker"/> sends it in one write with the headers.</summary>
public sealed class WholeBody(byte[] buffer, int length) : MemoryStream(buffer, 0, length, writable: false)
{
    public ReadOnlyMemory<byte> Content { get; } = buffer.AsMemory(0, length);
}

public static class ModelRequestReader
{
    // The endpoints whose JSON body names a model that must be loaded first. Load/unload/download name
    // a model too, but those are requests *about* loading and pass through untouched.
    private static readonly HashSet<string> InferencePaths = new(StringComparer.OrdinalIgnoreCase)
    {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
        "/api/v0/chat/completions", "/api/v0/completions", "/api/v0/embeddings", "/api/v1/chat",
    };

    public static bool CarriesModel(HttpRequest request)
    {
        if (!HttpMethods.IsPost(request.Method)) return false;
        var path = request.Path.Value!;
        return InferencePaths.Contains(path) || (path.EndsWith('/') && InferencePaths.Contains(path.TrimEnd('/')));
    }

    /// <summary>Reads and checks the body; exactly one of the results is non-null.</summary>
    public static async ValueTask<(ModelRequest? Request, ProxyError? Error)> ReadAsync(HttpRequest request, LmsProxyOptions options, CancellationToken cancellationToken)
    {
        var limit = options.MaxRequestBodyBytes;
        if (request.ContentLength > limit) return (null, TooLarge(limit));

        var buffer = ArrayPool<byte>.Shared.Rent(request.ContentLength is > 0 and < 1024 * 1024 ? (int)request.ContentLength.Value : 16 * 1024);
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (request.ContentLength == length) break;
                    buffer = Grow(buffer, length);
                }
                var read = await request.Body.ReadAsync(buffer.AsMemory(length), cancellationToken);
                if (read == 0) break;
                length += read;
                if (length > limit) return Reject(buffer, TooLarge(limit));
            }

            var found = Inspect(buffer.AsSpan(0, length));
            if (found.Problem is not null) return Reject(buffer, found.Problem);
            if (ModelName.Problem(found.Model) is { } nameProblem) return Reject(buffer, ProxyError.BadRequest("invalid_model", "Invalid 'model': " + nameProblem));

            var model = found.Model!;
            var target = options.ResolveAlias(model);
            if (target != model) (buffer, length) = Replace(buffer, length, found.ModelSpan, target);
            return (new ModelRequest(buffer, length, target, model, found.Stream, found.PreviousResponseId), null);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    private static (ModelRequest?, ProxyError?) Reject(byte[] buffer, ProxyError error)
    {
        ArrayPool<byte>.Shared.Return(buffer);
        return (null, error);
    }

    private static byte[] Grow(byte[] buffer, int length)
    {
        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
        buffer.AsSpan(0, length).CopyTo(bigger);
        ArrayPool<byte>.Shared.Return(buffer);
        return bigger;
    }

    private static ProxyError TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, "request_too_large", $"The request body is larger than {limit} bytes (LmsProxy:MaxRequestBodyBytes).");

    private readonly record struct Inspection(string? Model, Range ModelSpan, bool Stream, string? PreviousResponseId, ProxyError? Problem);

    /// <summary>
    /// One pass of a forward-only reader over the body: finds the top-level fields the proxy needs and checks the
    /// document is well-formed JSON (a broken body gets a clear 400 here instead of reaching LM Studio).
    /// </summary>
    private static Inspection Inspect(ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty) return Problem(ProxyError.BadRequest("invalid_json", "The request body is empty; a JSON object with a 'model' field is expected."));
        string? model = null, previous = null;
        Range span = default;
        var stream = false;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 128 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return Problem(ProxyError.BadRequest("invalid_json", "The request body must be a JSON object."));
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("model"u8))
                {
                    reader.Read();
                    if (model is not null) return Problem(ProxyError.BadRequest("invalid_model", "The request body names 'model' more than once."));
                    if (reader.TokenType != JsonTokenType.String) return Problem(ProxyError.BadRequest("invalid_model", $"'model' must be a string, not {Describe(reader.TokenType)}."));
                    model = reader.GetString();
                    span = new Range((int)reader.TokenStartIndex, (int)reader.BytesConsumed);
                }
                else if (reader.ValueTextEquals("stream"u8))
                {
                    reader.Read();
                    stream = reader.TokenType == JsonTokenType.True;
                }
                else if (reader.ValueTextEquals("previous_response_id"u8))
                {
                    reader.Read();
                    previous = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
            while (reader.Read())
            {
                // Only trailing whitespace may follow; anything else throws.
            }
        }
        catch (JsonException ex)
        {
            return Problem(ProxyError.BadRequest("invalid_json", "The request body is not valid JSON: " + ex.Message));
        }
        return model is null
            ? Problem(ProxyError.BadRequest("missing_model", "The request body has no 'model' field; name the model to use."))
            : new Inspection(model, span, stream, previous, null);
    }

    private static Inspection Problem(ProxyError error) => new(null, default, false, null, error);

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.Number => "a number",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    private static (byte[], int) Replace(byte[] body, int length, Range span, string model)
    {
        var (start, oldLength) = span.GetOffsetAndLength(length);
        var replacement = JsonSerializer.SerializeToUtf8Bytes(model, ProxyJson.Default.String);
        var newLength = length - oldLength + replacement.Length;
        var result = ArrayPool<byte>.Shared.Rent(newLength);
        body.AsSpan(0, start).CopyTo(result);
        replacement.CopyTo(result.AsSpan(start));
        body.AsSpan(start + oldLength, length - start - oldLength).CopyTo(result.AsSpan(start + replacement.Length));
        ArrayPool<byte>.Shared.Return(body);
        return (result, newLength);
    }
}
