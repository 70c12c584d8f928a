namespace LmsProxy.Proxy;

/// <summary>
/// What a client hears when its request body cannot be read: a body over the limit is a 413, broken framing (a bad
/// chunk size, a body cut short) a 400, both in the protocol's error shape. Never a 500: it is the client's input.
/// </summary>
internal static class BodyReadError
{
    public static ProxyError TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, "request_too_large", $"The request body is larger than {limit} bytes (LmsProxy:MaxRequestBodyBytes).");

    /// <summary>
    /// The error for an exception thrown while the body was read, or null when it is not the client's fault or the
    /// client has gone (then nobody would read an answer). Kestrel reports framing as BadHttpRequestException, except
    /// a chunk size too large to parse, which it reports as an IOException.
    /// </summary>
    public static ProxyError? From(Exception? exception, HttpContext context)
    {
        if (context.RequestAborted.IsCancellationRequested) return null;
        // YARP hands on what reading the client's body threw, possibly inside the exception of the send it broke.
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge }:
                    return TooLarge(Limit(context));
                case BadHttpRequestException bad:
                    return Unreadable(bad.Message);
                case IOException io when io.InnerException is null or OverflowException:
                    return Unreadable(io.Message);
            }
        }
        return null;
    }

    private static ProxyError Unreadable(string reason) =>
        ProxyError.BadRequest("request_body_error", $"The request body could not be read: {reason.TrimEnd('.')}. Check its Content-Length or chunked framing.");

    private static long Limit(HttpContext context) =>
        context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize ?? 0;
}
