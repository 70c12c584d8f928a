using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Hosting;

// Socket completions run inline on the I/O thread instead of hopping to the thread pool: ~10% more requests per
// second for a proxy whose code never blocks (measured with the benchmark). Read once, before the first socket.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

// `--healthcheck`: the container's health probe (the runtime image has no curl). Exit 0 when /healthz answers.
if (args.Contains("--healthcheck")) return await HealthProbe.RunAsync();

// appsettings.json is read and watched in this folder (for a .NET tool: its own folder; see ContentRoot).
var contentRoot = ContentRoot.Find();

// `--help`, `-h`, `--version`: print (the text is in CommandLineHelp) and exit 0 without starting the server.
if (CommandLineHelp.IsRequested(args)) return CommandLineHelp.Write(args, ContentRoot.SettingsFile(contentRoot), Console.Out);

// The slim builder: the same configuration sources (appsettings.json watched, environment, command line) and console
// logs, without IIS, QUIC and the rest a proxy never uses (they cost memory); HTTPS endpoints still work.
var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = args, ContentRootPath = contentRoot });
builder.WebHost.UseKestrelHttpsConfiguration();

// Invalid settings stop the program with one line that says what is wrong, not a stack trace.
if (ProxySettings.Bind(builder.Configuration, out var errors) is not { } startupOptions)
{
    Console.Error.WriteLine("LmsProxy cannot start: " + string.Join(" ", errors));
    return 2;
}

// Loopback by default: listening on all interfaces is a deliberate choice (--urls, ASPNETCORE_URLS, Docker).
if (builder.Configuration["urls"] is null && builder.Configuration["http_ports"] is null && builder.Configuration["https_ports"] is null)
{
    builder.WebHost.UseUrls("http://localhost:8080");
}
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Limits.MaxRequestBodySize = startupOptions.MaxRequestBodyBytes;
});
builder.Services.AddLmsProxy();

var app = builder.Build();
app.MapLmsProxy();
app.Lifetime.ApplicationStarted.Register(() => StartupBanner.Write(app));
app.Run();
return 0;
