namespace LmsProxy.Proxy;

/// <summary>How a request the key's rules refused ends (Sharing/SharingGate: model list, limits, MaxConcurrent's deadline).</summary>
internal sealed partial class ProxyHandler
{
    private async Task RefuseForKeyAsync(HttpContext context, ModelRequest request, ProxyError refusal, long started)
    {
        if (context.RequestAborted.IsCancellationRequested)
        {
            Record(context, request, null, "cancelled", TimeSpan.Zero, started, warm: false);
            return;
        }
        await refusal.WriteAsync(context);
        var outcome = refusal.Status == StatusCodes.Status429TooManyRequests ? "rate_limited" : refusal.Code;
        Record(context, request, null, outcome, _time.GetElapsedTime(started), started, warm: false);
    }
}
