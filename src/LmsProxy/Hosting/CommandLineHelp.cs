using System.Globalization;
using System.Reflection;
using LmsProxy.Configuration;

namespace LmsProxy.Hosting;

/// <summary><c>lmsproxy --help</c> (or <c>-h</c>) and <c>--version</c>: print, exit 0, start nothing.</summary>
internal static class CommandLineHelp
{
    public static string Version { get; } =
        typeof(CommandLineHelp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown";

    /// <summary>Whether the arguments ask for help or the version rather than for a server.</summary>
    public static bool IsRequested(string[] args) => args.Any(a => a is "--help" or "-h" or "-?" or "--version");

    public static int Write(string[] args, string settingsFile, TextWriter output)
    {
        if (args.Contains("--version") && !args.Any(a => a is "--help" or "-h" or "-?"))
        {
            output.WriteLine(Version);
            return 0;
        }
        output.Write(Text(settingsFile));
        return 0;
    }

    internal static string Text(string settingsFile)
    {
        var d = new LmsProxyOptions();
        var upstream = d.Upstream.GetLeftPart(UriPartial.Authority);
        var file = File.Exists(settingsFile) ? settingsFile : settingsFile + " (absent: built-in defaults)";
        return string.Create(CultureInfo.InvariantCulture, $$"""
            LmsProxy {{Version}}: a reverse proxy for LM Studio that loads the model a request names, then forwards it.

            Usage: lmsproxy [--urls <address>] [--settings <file>] [--<setting>=<value> ...]
                   lmsproxy service install [--user] [--settings <file>] [--print] [-- <arguments for the service>]
                   lmsproxy service uninstall [--user] [--print] | lmsproxy service status [--user]
                   lmsproxy --help | --version
            Clients change one base URL: LM Studio's {{upstream}}/v1 becomes http://localhost:8080/v1.

            Main settings [default]:
              --urls                               listen address, or ASPNETCORE_URLS [http://localhost:8080]
              LmsProxy:Upstream                    LM Studio's base URL, no path [{{upstream}}]
              LmsProxy:Hosts:<name>:Url            several LM Studio servers instead of Upstream
              LmsProxy:Loader                      auto, lms or rest [{{Lower(d.Loader)}}]
              LmsProxy:Lms:Path                    the lms executable [PATH, then ~/.lmstudio/bin/lms]
              LmsProxy:HoldTimeout                 longest a request waits for its model to load [{{d.Holding.HoldTimeout:c}}]
              LmsProxy:Capacity:MaxLoadedModels    most models loaded at once, 0: no limit [{{d.Capacity.MaxLoadedModels}}]
              LmsProxy:Capacity:MemoryBudgetBytes  memory the loaded models may use, 0: unknown [{{d.Capacity.MemoryBudgetBytes}}]
              LmsProxy:Capacity:IdleUnloadAfter    unload a model unused this long, 00:00:00: never [{{d.Capacity.IdleUnloadAfter:c}}]
              LmsProxy:Capacity:MaxSwapWait        longest to wait for a busy model to make room [{{d.Capacity.MaxSwapWait}}]
              LmsProxy:Preload:<n>                 models loaded at start-up and kept loaded
              LmsProxy:Aliases:<name>              a name clients send, mapped to an LM Studio model key
              LmsProxy:ApiKeys:<n>                 keys clients must send (8+ characters); none: no key needed
              LmsProxy:AllowedHosts:<n>            more names clients reach the proxy by (gpu.example.com)
              LmsProxy:AllowedOrigins:<n>          web pages that may call the proxy (http://192.168.1.30:3000)
              LmsProxy:StreamKeepAlive             what a held stream gets meanwhile: off, comment, chunk or reasoning [{{Lower(d.Holding.StreamKeepAlive)}}]
              LmsProxy:NonStreamingKeepAlive       200 and spaces while a request that is not streamed waits [{{(d.Holding.NonStreamingKeepAlive ? "true" : "false")}}]
            Durations are hh:mm:ss. The settings file lists every setting with its default.

            Three ways to set them (the command line wins over the environment, the environment over the file):
              command line   --LmsProxy:Upstream=http://192.168.1.20:1234 --LmsProxy:Preload:0=qwen/qwen3-8b
              environment    LmsProxy__Upstream=http://192.168.1.20:1234 (each ':' becomes '__')
              settings file  "LmsProxy": { "Upstream": "http://192.168.1.20:1234" }; edits apply without a restart

            Settings file: {{file}}; --settings <file>: one of your own over it (watched too).

            As a service that starts with the machine: `service install` (as root, or --user: your own systemd manager,
            lingering on) writes a systemd unit on Linux, a launchd agent on macOS, a Windows service (sc.exe) on
            Windows, and starts it; --print shows what it would write and run, and changes nothing. The service runs
            as the user who installs it (under sudo: the user who ran sudo), which must be the user who runs LM Studio:
            lms finds LM Studio's server and key in that user's home (~/.lmstudio), so under another account it cannot.

            Invalid settings stop the program with one line naming the setting (exit code 2).
            Once running: GET / (status page), /status, /metrics, /healthz, /readyz.

            """);
    }

    private static string Lower(Enum value) => value.ToString().ToLowerInvariant();
}
