using System.Diagnostics;
using System.Globalization;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>
/// Debian's nginx as a reverse proxy in front of LmsProxy, started per test in its own folder, with a short
/// proxy_read_timeout: the intermediary that gives up on a response that sends nothing for a while.
/// </summary>
internal sealed class Nginx : IAsyncDisposable
{
    public const string Executable = "/usr/sbin/nginx";

    private readonly Process _process;
    private readonly DirectoryInfo _dir;

    private Nginx(Process process, DirectoryInfo dir, Uri url) => (_process, _dir, Url) = (process, dir, url);

    public Uri Url { get; }

    public static bool Installed => File.Exists(Executable);

    public static async Task<Nginx> StartAsync(Uri upstream, TimeSpan readTimeout)
    {
        var dir = Directory.CreateTempSubdirectory("nginx-");
        var port = Eventually.UnusedPort();
        var seconds = ((int)Math.Ceiling(readTimeout.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        var conf = Path.Combine(dir.FullName, "nginx.conf");
        await File.WriteAllTextAsync(conf, $$"""
            daemon off;
            worker_processes 1;
            pid {{dir.FullName}}/nginx.pid;
            error_log {{dir.FullName}}/error.log warn;
            events { worker_connections 64; }
            http {
              access_log off;
              client_body_temp_path {{dir.FullName}}/body;
              proxy_temp_path {{dir.FullName}}/proxy;
              fastcgi_temp_path {{dir.FullName}}/fastcgi;
              uwsgi_temp_path {{dir.FullName}}/uwsgi;
              scgi_temp_path {{dir.FullName}}/scgi;
              server {
                listen 127.0.0.1:{{port}};
                location / {
                  proxy_pass {{upstream.GetLeftPart(UriPartial.Authority)}};
                  proxy_http_version 1.1;
                  proxy_read_timeout {{seconds}}s;
                  proxy_send_timeout {{seconds}}s;
                }
              }
            }
            """);
        var process = Process.Start(new ProcessStartInfo(Executable, ["-p", dir.FullName, "-e", Path.Combine(dir.FullName, "error.log"), "-c", conf])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        _ = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        var nginx = new Nginx(process, dir, new Uri($"http://127.0.0.1:{port}"));
        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        await Eventually.Until(async () =>
        {
            if (process.HasExited) throw new InvalidOperationException("nginx exited: " + File.ReadAllText(Path.Combine(dir.FullName, "error.log")));
            try
            {
                using var response = await probe.GetAsync(new Uri(nginx.Url, "/healthz"));
                return true;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        });
        return nginx;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        try { _dir.Delete(recursive: true); } catch (IOException) { }
    }
}
