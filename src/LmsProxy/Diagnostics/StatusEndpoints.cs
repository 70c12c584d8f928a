using System.Reflection;
using LmsProxy.Configuration;
using LmsProxy.Loading;
using LmsProxy.Models;

namespace LmsProxy.Diagnostics;

/// <summary>GET /status: what the proxy is doing, for people and scripts. GET / shows the same as a page.</summary>
public static class StatusEndpoints
{
    private static readonly string Version =
        typeof(StatusEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown";

    public static void MapStatusEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/status", async (ProxySettings settings, LmStudioApi api, LoaderSelector loaders, ModelRegistry registry, LoadCoordinator coordinator, CancellationToken cancellationToken) =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var (reachable, detail) = await api.ProbeAsync(timeout.Token);
            var loader = loaders.Current;
            return Results.Json(new StatusReport(
                Version,
                new UpstreamStatus(settings.Current.Upstream.ToString(), reachable, detail),
                new LoaderStatus(loader.Name, loader.LmsPath, loader.Reason),
                registry.RefreshedAt,
                Models(registry.Catalog, coordinator)));
        });
        app.MapGet("/", () => Results.Content(StatusPage.Html, "text/html; charset=utf-8"));
    }

    private static List<ModelStatus> Models(ModelCatalog catalog, LoadCoordinator coordinator)
    {
        var slots = coordinator.Slots.ToDictionary(s => s.Key, s => s.Value, StringComparer.OrdinalIgnoreCase);
        var models = catalog.Models.Select(m => Describe(m.Key, m.Type, m.LoadedInstanceIds, slots.GetValueOrDefault(m.Key))).ToList();
        // Names asked for that LM Studio does not list (yet) still show their held requests and errors.
        models.AddRange(slots.Where(s => catalog.Resolve(s.Key) is null).Select(s => Describe(s.Key, null, [], s.Value)));
        return models;
    }

    private static ModelStatus Describe(string key, string? type, IReadOnlyList<string> instances, ModelSlot? slot) => new(
        key, type, instances.Count > 0, instances, slot?.Loading ?? false, slot is null ? 0 : Volatile.Read(ref slot.Held),
        slot?.LastLoadDuration?.TotalMilliseconds, slot?.LastLoadedAt, slot?.LastError, slot?.LastErrorAt);

    public sealed record StatusReport(string Version, UpstreamStatus Upstream, LoaderStatus Loader, DateTimeOffset? ModelsRefreshedAt, List<ModelStatus> Models);

    public sealed record UpstreamStatus(string Url, bool Reachable, string Detail);

    public sealed record LoaderStatus(string Name, string? LmsPath, string Reason);

    public sealed record ModelStatus(string Key, string? Type, bool Loaded, IReadOnlyList<string> Instances, bool Loading, int Held,
        double? LastLoadMs, DateTimeOffset? LastLoadedAt, string? LastError, DateTimeOffset? LastErrorAt);
}
