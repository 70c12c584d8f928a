using LmsProxy.Configuration;
using Microsoft.AspNetCore.Http.Features;

namespace LmsProxy.Proxy;

/// <summary>
/// Every other request body (loads and unloads, token counts, unknown paths) is read whole before it is forwarded or
/// answered, as inference bodies are, under the same limit and budget. A body that cannot be read is then answered
/// here with a clean 400 or 413, instead of failing inside YARP's copy to LM Studio (a 400 with .NET's own words, and
/// a warning with a stack trace in the log for each one). These bodies are small; the budget holds the rest.
/// </summary>
internal sealed partial class BufferedBody(RequestDelegate next, ProxySettings settings, HeldBodyBudget budget, ILoggerFactory loggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("LmsProxy.Requests");

    public Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        // Inference bodies are read by ModelRequestReader; an upgrade's bytes are a stream, not a body.
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody != true || request.Headers.Upgrade.Count > 0 || RequestPaths.IsInference(request))
        {
            return next(context);
        }
        return ReadThenNextAsync(context);
    }

    private async Task ReadThenNextAsync(HttpContext context)
    {
        var request = context.Request;
        var (buffer, length, error) = await BodyReader.ReadAsync(request, settings.Current, budget, context.RequestAborted);
        if (error is not null)
        {
            // One line, no stack trace: it is the client's input, and a client sending many must not fill the log.
            LogRefused(_logger, request.Method, request.Path, error.Status, error.Code);
            await error.WriteAsync(context);
            return;
        }
        try
        {
            request.Body = new WholeBody(buffer!, length);
            request.ContentLength = length;
            if (request.Headers.TransferEncoding.Count > 0) request.Headers.TransferEncoding = default;
            await next(context);
        }
        finally
        {
            budget.Return(buffer!);
        }
    }

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "{Method} {Path} status={Status} {Code}")]
    private static partial void LogRefused(ILogger logger, string method, string path, int status, string code);
}
