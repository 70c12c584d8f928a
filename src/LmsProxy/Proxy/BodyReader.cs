using LmsProxy.Configuration;

namespace LmsProxy.Proxy;

/// <summary>
/// Reads a request body whole into a buffer charged to the <see cref="HeldBodyBudget"/>. Too large is a 413, the
/// budget spent a 503 with Retry-After, broken framing a 400; the caller gives the buffer back to the budget.
/// </summary>
internal static class BodyReader
{
    public readonly record struct Result(byte[]? Buffer, int Length, ProxyError? Error);

    public static async ValueTask<Result> ReadAsync(HttpRequest request, LmsProxyOptions options, HeldBodyBudget budget, CancellationToken cancellationToken)
    {
        var limit = options.Forwarding.MaxRequestBodyBytes;
        if (request.ContentLength > limit) return new(null, 0, BodyReadError.TooLarge(limit));

        // A declared length is charged whole before a byte is read; a chunked body as its buffer grows.
        var buffer = budget.TryRent(request.ContentLength is > 0 and <= int.MaxValue ? (int)request.ContentLength.Value : 16 * 1024, options.Holding.MaxHeldBodyBytes);
        if (buffer is null) return new(null, 0, HeldBodiesFull(options));
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (request.ContentLength == length) break;
                    if (Grow(budget, buffer, length, options) is not { } bigger) return Reject(budget, buffer, HeldBodiesFull(options));
                    buffer = bigger;
                }
                int read;
                try
                {
                    read = await request.Body.ReadAsync(buffer.AsMemory(length), cancellationToken);
                }
                catch (Exception ex) when (BodyReadError.From(ex, request.HttpContext) is { } unreadable)
                {
                    return Reject(budget, buffer, unreadable);
                }
                if (read == 0) break;
                length += read;
                if (length > limit) return Reject(budget, buffer, BodyReadError.TooLarge(limit));
            }
            return new(buffer, length, null);
        }
        catch
        {
            budget.Return(buffer);
            throw;
        }
    }

    public static ProxyError HeldBodiesFull(LmsProxyOptions options) =>
        new(StatusCodes.Status503ServiceUnavailable, "held_bodies_full",
            $"LmsProxy holds {options.Holding.MaxHeldBodyBytes / (1024 * 1024)} MiB of request bodies already (LmsProxy:MaxHeldBodyBytes). Retry shortly.", TimeSpan.FromSeconds(5));

    private static Result Reject(HeldBodyBudget budget, byte[] buffer, ProxyError error)
    {
        budget.Return(buffer);
        return new(null, 0, error);
    }

    private static byte[]? Grow(HeldBodyBudget budget, byte[] buffer, int length, LmsProxyOptions options)
    {
        // One byte past the limit is enough to know the body is too large.
        var size = Math.Min(Math.Min((long)buffer.Length * 2, options.Forwarding.MaxRequestBodyBytes + 1), Array.MaxLength);
        if (budget.TryRent((int)size, options.Holding.MaxHeldBodyBytes) is not { } bigger) return null;
        buffer.AsSpan(0, length).CopyTo(bigger);
        budget.Return(buffer);
        return bigger;
    }
}
