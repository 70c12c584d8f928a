using LmsProxy.Scheduling;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>The real LmsProxy program on a real loopback socket (Kestrel, random port), configured per test.</summary>
internal sealed class ProxyApp : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> _settings;

    private readonly string? _settingsFile;

    /// <param name="settingsFile">A JSON file layered over the settings and watched for edits, as appsettings.json is.</param>
    public ProxyApp(Uri upstream, IDictionary<string, string?>? settings = null, string? settingsFile = null)
    {
        _settingsFile = settingsFile;
        _settings = new Dictionary<string, string?>
        {
            ["LmsProxy:Upstream"] = upstream.GetLeftPart(UriPartial.Authority),
            ["LmsProxy:Loader"] = "rest",
            // Memory only unless a test gives a file: tests must not share the user's store.
            ["LmsProxy:State:Path"] = "",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>()) _settings[key] = value;
        // A random loopback port unless the test names its own "urls" (UseKestrel(port) races with start-up).
        _settings.TryAdd("urls", "http://127.0.0.1:0");
        UseKestrel();
        StartServer();
        // Clients reach a proxy listening on all interfaces through loopback.
        var listening = new UriBuilder(Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        if (listening.Host is "0.0.0.0" or "[::]") listening.Host = "127.0.0.1";
        Url = listening.Uri;
    }

    public Uri Url { get; }

    public CapturedLogs Logs { get; } = new();

    public HttpClient Client(TimeSpan? timeout = null) => new() { BaseAddress = Url, Timeout = timeout ?? TimeSpan.FromSeconds(30) };

    public Scheduler Scheduler => Services.GetRequiredService<Scheduler>();

    /// <summary>Requests held now, as /status shows them.</summary>
    public int HeldNow => Scheduler.Snapshot().Models.Sum(m => m.Held);

    /// <summary>Whether the proxy holds <paramref name="key"/> as loaded and ready on some host.</summary>
    public bool IsLoaded(string key) =>
        Scheduler.Snapshot().Hosts.Any(h => h.Instances.Any(i => i.Model == key && i.State == InstanceState.Ready));

    /// <summary>True once every host's model list was read (as at the end of start-up in normal operation).</summary>
    public bool Refreshed => Scheduler.Snapshot().Hosts.All(h => h.RefreshedAt is not null);

    /// <summary>With LMSPROXY_TEST_LOGS=dir, every proxy's log lines are written there when it stops (for debugging a test).</summary>
    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (Environment.GetEnvironmentVariable("LMSPROXY_TEST_LOGS") is { Length: > 0 } dir)
        {
            Directory.CreateDirectory(dir);
            await File.WriteAllLinesAsync(Path.Combine(dir, $"proxy-{Url.Port}.log"), Logs.Lines);
        }
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (key, value) in _settings) builder.UseSetting(key, value);
        builder.ConfigureLogging(logging => logging.AddProvider(Logs));
        if (_settingsFile is not null)
        {
            builder.ConfigureAppConfiguration(config => config.AddJsonFile(_settingsFile, optional: false, reloadOnChange: true));
        }
    }
}
