using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Benchmarks;

/// <summary>The things under load: a static nginx as the fast upstream, nginx as a plain reverse proxy, a bare YARP forwarder, and LmsProxy.</summary>
internal static class Targets
{
    public const string Model = "bench-model";
    public const string ChatBody = """{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}""";
    public const string StreamBody = """{"model":"bench-model","stream":true,"prompt":"hi"}""";

    /// <summary>
    /// nginx answering from memory: LM Studio's shapes, with the benchmark model loaded, reporting 128 parallel slots:
    /// as many as the largest load, so that the table measures the warm path (a slot free; the fairness mode measures the queue).
    /// </summary>
    public static string UpstreamNginx(string dir, int port) => Nginx(dir, $$$"""
        server {
          listen 127.0.0.1:{{{port}}};
          location = /api/v1/models { default_type application/json; return 200 '{"models":[{"type":"llm","key":"{{{Model}}}","loaded_instances":[{"id":"{{{Model}}}","config":{"parallel":128}}]}]}'; }
          location = /lmstudio-greeting { default_type application/json; return 200 '{"lmstudio":true}'; }
          location = /v1/models { default_type application/json; return 200 '{"object":"list","data":[{"id":"{{{Model}}}","object":"model","owned_by":"organization_owner"}]}'; }
          location = /v1/chat/completions { default_type application/json; return 200 '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"{{{Model}}}","choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'; }
          location = /v1/completions { default_type text/event-stream; return 200 'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"Hello"}]}\n\ndata: [DONE]\n\n'; }
        }
        """);

    /// <summary>nginx as a plain reverse proxy, configured as one would for SSE.</summary>
    public static string ProxyNginx(string dir, int port, int upstreamPort) => Nginx(dir, $$"""
        upstream lmstudio { server 127.0.0.1:{{upstreamPort}}; keepalive 128; }
        server {
          listen 127.0.0.1:{{port}};
          location / {
            proxy_pass http://lmstudio;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
          }
        }
        """);

    private static string Nginx(string dir, string server)
    {
        Directory.CreateDirectory(dir);
        var conf = Path.Combine(dir, "nginx.conf");
        File.WriteAllText(conf, $$"""
            worker_processes auto;
            daemon off;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log warn;
            events { worker_connections 4096; }
            http {
              access_log off;
              client_body_temp_path {{dir}}/body;
              proxy_temp_path {{dir}}/proxy;
              fastcgi_temp_path {{dir}}/fastcgi;
              uwsgi_temp_path {{dir}}/uwsgi;
              scgi_temp_path {{dir}}/scgi;
              {{server}}
            }
            """);
        return conf;
    }

    /// <summary>YARP's direct forwarder with nothing in front: what LmsProxy would cost without its gate.</summary>
    public static async Task<WebApplication> StartBareYarpAsync(int port, int upstreamPort)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Services.AddHttpForwarder();
        var app = builder.Build();
        var invoker = new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None, UseCookies = false });
        var forwarder = app.Services.GetRequiredService<IHttpForwarder>();
        var config = new ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromMinutes(10) };
        var destination = $"http://127.0.0.1:{upstreamPort}";
        app.Map("/{**path}", async (HttpContext context) => await forwarder.SendAsync(context, destination, invoker, config, HttpTransformer.Default));
        await app.StartAsync();
        return app;
    }

    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");
}
