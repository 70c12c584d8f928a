using System.Text;
using System.Text.Json;
using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Proxy;

/// <summary>
/// An inference request, read whole so it can be re-sent: its body (in a buffer charged to the held-body budget, given
/// back on dispose) and what the proxy needs from it: the model, whether it streams, and the conversation it continues.
/// </summary>
internal sealed class ModelRequest : IDisposable
{
    private readonly HeldBodyBudget _budget;
    private byte[]? _buffer;

    internal ModelRequest(HeldBodyBudget budget, byte[] buffer, int length, string model, string requestedModel, bool stream, string? previousResponseId)
    {
        _budget = budget;
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
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer) _budget.Return(buffer);
    }
}

/// <summary>A request body the proxy holds whole; <see cref="UpstreamInvoker"/> sends it in one write with the headers.</summary>
internal sealed class WholeBody(byte[] buffer, int length) : MemoryStream(buffer, 0, length, writable: false)
{
    public ReadOnlyMemory<byte> Content { get; } = buffer.AsMemory(0, length);
}

internal static class ModelRequestReader
{
    /// <summary>Reads and checks the body; exactly one of the results is non-null.</summary>
    /// <param name="scheduler">When given, a variant name ("key@quant") is resolved against what LM Studio lists (<see cref="VariantRequests"/>).</param>
    public static async ValueTask<(ModelRequest? Request, ProxyError? Error)> ReadAsync(HttpRequest request, LmsProxyOptions options, HeldBodyBudget budget, CancellationToken cancellationToken,
        Scheduling.Scheduler? scheduler = null)
    {
        var (buffer, length, error) = await BodyReader.ReadAsync(request, options, budget, cancellationToken);
        if (error is not null) return (null, error);

        var found = Inspect(buffer.AsSpan(0, length));
        if (found.Problem is not null) return Reject(budget, buffer!, found.Problem);
        if (ModelName.Problem(found.Model) is { } nameProblem) return Reject(budget, buffer!, ProxyError.BadRequest("invalid_model", "Invalid 'model': " + nameProblem));

        var model = found.Model!;
        var target = options.Loading.ResolveAlias(model);
        if (scheduler is not null)
        {
            var (resolved, refusal) = await VariantRequests.ResolveAsync(target, scheduler, cancellationToken);
            if (refusal is not null) return Reject(budget, buffer!, refusal);
            target = resolved;
        }
        if (target != model)
        {
            if (Replace(budget, buffer!, length, found.ModelSpan, target, options) is not { } replaced) return Reject(budget, buffer!, BodyReader.HeldBodiesFull(options));
            (buffer, length) = replaced;
        }
        return (new ModelRequest(budget, buffer!, length, target, model, found.Stream, found.PreviousResponseId), null);
    }

    private static (ModelRequest?, ProxyError?) Reject(HeldBodyBudget budget, byte[] buffer, ProxyError error)
    {
        budget.Return(buffer);
        return (null, error);
    }

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
        var decoding = "";
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
                    decoding = "model";
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
                    decoding = "previous_response_id";
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
        catch (InvalidOperationException ex) when (ex.InnerException is DecoderFallbackException)
        {
            // The reader checks UTF-8 only when a string is decoded: the fields the proxy reads.
            return Problem(ProxyError.BadRequest(decoding == "model" ? "invalid_model" : "invalid_json", $"'{decoding}' is not valid UTF-8."));
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

    private static (byte[], int)? Replace(HeldBodyBudget budget, byte[] body, int length, Range span, string model, LmsProxyOptions options)
    {
        var (start, oldLength) = span.GetOffsetAndLength(length);
        var replacement = JsonSerializer.SerializeToUtf8Bytes(model, ProxyJson.Default.String);
        var newLength = length - oldLength + replacement.Length;
        if (budget.TryRent(newLength, options.Holding.MaxHeldBodyBytes) is not { } result) return null;
        body.AsSpan(0, start).CopyTo(result);
        replacement.CopyTo(result.AsSpan(start));
        body.AsSpan(start + oldLength, length - start - oldLength).CopyTo(result.AsSpan(start + replacement.Length));
        budget.Return(body);
        return (result, newLength);
    }
}
