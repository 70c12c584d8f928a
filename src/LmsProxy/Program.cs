using LmsProxy.Configuration;
using LmsProxy.Diagnostics;
using LmsProxy.Hosting;
using LmsProxy.Service;

// Socket completions run inline on the I/O thread instead of hopping to the thread pool: ~10% more requests per
// second for a proxy whose code never blocks (measured with the benchmark). Read once, before the first socket.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

// `--healthcheck`: the container's health probe (the runtime image has no curl). Exit 0 when /healthz answers.
if (args.Contains("--healthcheck")) return await HealthProbe.RunAsync();

// `service install|uninstall|status`: this program as a systemd, launchd or Windows service (see ServiceCommand).
if (ServiceCommand.IsRequested(args)) return ServiceCommand.Run(args, Console.Out, Console.Error);

// appsettings.json is read and watched in this folder (for a .NET tool: its own folder; see ContentRoot).
var contentRoot = ContentRoot.Find();

// `--help`, `-h`, `--version`: print (the text is in CommandLineHelp) and exit 0 without starting the server.
if (CommandLineHelp.IsRequested(args)) return CommandLineHelp.Write(args, ContentRoot.SettingsFile(contentRoot), Console.Out);

// `--settings PATH`: a settings file of the user's own over appsettings.json (services keep theirs outside the program).
(var settingsFile, args) = SettingsFileOption.Extract(args);
if (settingsFile is not null && !File.Exists(settingsFile))
{
    Console.Error.WriteLine($"LmsProxy cannot start: the settings file {settingsFile} does not exist.");
    return 2;
}

// The JIT runtime's two low-memory settings, which only the environment can give (re-executes once; see LowMemoryRuntime).
LowMemoryRuntime.Apply();

// The slim builder: the same configuration sources (appsettings.json watched, environment, command line) and console
// logs, without IIS, QUIC and the rest a proxy never uses (they cost memory); HTTPS endpoints still work.
var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = args, ContentRootPath = contentRoot });
builder.WebHost.UseKestrelHttpsConfiguration();
if (settingsFile is not null) SettingsFileOption.Add(builder.Configuration, settingsFile);
// Under systemd (Type=notify): READY=1 once listening, STOPPING=1, journal-friendly logs. As a Windows service: the
// service manager's start and stop. Anywhere else both do nothing.
builder.Services.AddSystemd();
builder.Services.AddWindowsService(service => service.ServiceName = WindowsServiceCommands.ServiceName);

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
    kestrel.Limits.MaxRequestBodySize = startupOptions.Forwarding.MaxRequestBodyBytes;
});
builder.Services.AddLmsProxy();

var app = builder.Build();
app.MapLmsProxy();
app.Lifetime.ApplicationStarted.Register(() => StartupBanner.Write(app));
app.Run();
return 0;
