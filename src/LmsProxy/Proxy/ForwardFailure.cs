namespace LmsProxy.Proxy;

/// <summary>What a forward that got no answer means, read from the exception .NET raised.</summary>
internal enum FailureKind
{
    /// <summary>The host could not be reached: refused, unresolvable, TLS failed, or the connect timed out (packets dropped).</summary>
    Unreachable,

    /// <summary>The host took the request and closed the connection before answering (an unload, a crash, a size limit).</summary>
    CutOff,

    /// <summary>Anything else: the proxy's own request was wrong (a content length, a protocol error) or the answer was malformed.</summary>
    Failed,
}

internal static class ForwardFailure
{
    /// <summary>
    /// Only the first two may be re-sent, and neither is ever taken for "not loaded": a failure that is the proxy's own
    /// must not send the request around again.
    /// </summary>
    public static FailureKind Classify(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError }:
                    return FailureKind.Unreachable;
                case HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded }:
                    return FailureKind.CutOff;
                case HttpRequestException { HttpRequestError: not HttpRequestError.Unknown }:
                    return FailureKind.Failed;
                // SocketsHttpHandler's ConnectTimeout: a cancellation whose cause is a TimeoutException.
                case TimeoutException:
                    return FailureKind.Unreachable;
                // A reset while the answer was awaited (the request went out whole).
                case IOException when e.InnerException is System.Net.Sockets.SocketException or null:
                    return FailureKind.CutOff;
            }
        }
        return FailureKind.Failed;
    }
}
