using System.Net;
using System.Text;
using LmsProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LmsProxy.Tests.Gateway;

/// <summary>Streaming through a real Kestrel upstream: events arrive one by one, and a leaving client stops LM Studio.</summary>
public sealed class StreamingTests : IAsyncLifetime
{
    private readonly TaskCompletionSource _clientGotFirstEvent = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _upstreamSawAbort = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _lastEventWritten;
    private WebApplication _upstream = null!;
    private ProxyApp _proxy = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _upstream = builder.Build();
        _upstream.MapGet("/api/v1/models", () => Results.Json(new { models = new[] { new { type = "llm", key = "m", loaded_instances = new[] { new { id = "m" } } } } }));
        _upstream.MapPost("/v1/chat/completions", async (HttpContext context) =>
        {
            context.Response.ContentType = "text/event-stream";
            try
            {
                await WriteEvent(context, "first");
                // The second event is written only once the client has the first: a buffering proxy would deadlock here.
                await _clientGotFirstEvent.Task.WaitAsync(TimeSpan.FromSeconds(10), context.RequestAborted);
                await WriteEvent(context, "second");
                await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted);
                _lastEventWritten = true;
                await WriteEvent(context, "[DONE]");
            }
            catch (OperationCanceledException)
            {
                _upstreamSawAbort.TrySetResult();
            }
        });
        _upstream.MapPost("/v1/completions", async (HttpContext context) =>
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                _upstreamSawAbort.TrySetResult();
            }
        });
        await _upstream.StartAsync();
        _proxy = new ProxyApp(new Uri(_upstream.Urls.First()));
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact(Timeout = 20000)]
    public async Task StreamedEvents_ReachTheClientOneByOne_AndDisconnectAbortsUpstream()
    {
        using var client = _proxy.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("m", stream: true) };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("no", response.Headers.GetValues("X-Accel-Buffering").Single());
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());

        Assert.Equal("data: first", await reader.ReadLineAsync());
        Assert.False(_lastEventWritten);
        _clientGotFirstEvent.SetResult();
        Assert.Equal("", await reader.ReadLineAsync());
        Assert.Equal("data: second", await reader.ReadLineAsync());

        // The client goes away mid-stream: LM Studio must see its request aborted, not generate for nobody.
        response.Dispose();
        await _upstreamSawAbort.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(_lastEventWritten);
    }

    [Fact(Timeout = 20000)]
    public async Task ClientDisconnectBeforeAnyResponse_AbortsUpstream()
    {
        using var client = _proxy.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.PostAsync("/v1/completions", Json.Body("{\"model\":\"m\",\"prompt\":\"x\"}"), cts.Token));

        await _upstreamSawAbort.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    private static async Task WriteEvent(HttpContext context, string data)
    {
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes($"data: {data}\n\n"));
        await context.Response.Body.FlushAsync();
    }
}
