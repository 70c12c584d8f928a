using LmsProxy.Configuration;
using LmsProxy.Hosts;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>Requests that name no model (model lists, a client's own load or unload, other LM Studio paths): forwarded as they are.</summary>
internal sealed partial class ProxyHandler
{
    /// <summary>A request that names no model: to the default host (or, for a client's own load or unload, the host it concerns).</summary>
    private async Task ForwardOtherAsync(HttpContext context, LmsProxyOptions options, RequestKind kind)
    {
        var host = _scheduler.DefaultHost();
        if (kind == RequestKind.ModelControl)
        {
            host = await ModelControl.ChooseHostAsync(context, _scheduler, options);
            if (host is null) return; // answered: no host, or several could
        }
        if (host is null)
        {
            await new ProxyError(StatusCodes.Status502BadGateway, "upstream_unavailable", "No LM Studio host is configured.").WriteAsync(context);
            return;
        }
        // The activity record: inference requests always; other requests to a path LM Studio knows.
        if (context.Request.Headers.Upgrade.Count == 0 && kind is RequestKind.Known or RequestKind.ModelList or RequestKind.ModelControl) _activity.Begin(context, _time.GetTimestamp(), null);
        try
        {
            var transformers = TransformersFor(host);
            var key = Keys.ApiKey.Of(context);
            HttpTransformer transformer = kind == RequestKind.ModelList
                ? new ModelListTransformer(transformers.PassThrough, await CurrentCatalogAsync(context.RequestAborted), options, _scheduler.LoadStates(), key)
                : Keys.NativeModelListFilter.Applies(context.Request, key) ? new Keys.NativeModelListFilter(transformers.PassThrough, key!, _scheduler.Catalog, options)
                : kind is RequestKind.Known or RequestKind.ModelControl || context.Request.Headers.Upgrade.Count > 0 ? transformers.PassThrough : transformers.UnknownPath;
            if (_scheduler.SeveralHosts) context.Response.Headers["X-LmsProxy-Host"] = host.Name;
            var error = await _forwarder.SendAsync(context, host.Prefix, _invoker, RequestConfig(options), transformer);
            // A client's own load or unload changed what the host holds: the scheduler reads its list now.
            if (kind == RequestKind.ModelControl) _ = _scheduler.RefreshAsync(host, CancellationToken.None);
            await FinishAsync(context, null, new Attempt(AttemptKind.Forwarded, host, Error: error), TimeSpan.Zero, _time.GetTimestamp(), warm: true);
        }
        finally
        {
            _activity.Finished(context);
        }
    }

    private async Task<Models.ModelCatalog> CurrentCatalogAsync(CancellationToken cancellationToken)
    {
        await _scheduler.RefreshAllAsync(cancellationToken);
        return _scheduler.Catalog;
    }
}
