using System.Net;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using OpenAI;
using OpenAI.Models;

namespace LmsProxy.Tests.Gateway;

/// <summary>Paths and query strings reach LM Studio exactly as the client sent them; GET /v1/models/{id} is answered from the catalog.</summary>
public sealed class PathFidelityTests : IAsyncLifetime
{
    private WebApplication _upstream = null!;
    private ProxyApp _proxy = null!;
    private HttpClient _client = null!;
    private readonly List<string> _seen = [];

    public async Task InitializeAsync()
    {
        // A bare upstream that records the request target as it arrived on the wire.
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _upstream = builder.Build();
        _upstream.Run(async context =>
        {
            var raw = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
            lock (_seen) _seen.Add(raw);
            await context.Response.WriteAsJsonAsync(raw == "/api/v1/models" ? (object)new { models = Array.Empty<object>() } : new { raw });
        });
        await _upstream.StartAsync();
        _proxy = new ProxyApp(new Uri(_upstream.Urls.First()));
        _client = _proxy.Client();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _proxy.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Theory(Timeout = 15000)]
    [InlineData("/api/v0/models/qwen%2Fqwen3-8b")]
    [InlineData("/api/v0/models/a%20b?q=x%20y")]
    [InlineData("/api/v0/models/what%3Fnot?x=%3F")]
    [InlineData("/api/v0/models/a+b?c=d+e")]
    [InlineData("/api/v0/models/caf%C3%A9-%E6%A8%A1%E5%9E%8B")]
    [InlineData("/api/v1/models/download/status/job%2F1%25")]
    [InlineData("/v1/files/abc%2Fdef?purpose=a%26b")]
    public async Task RequestTarget_ReachesLmStudio_ByteForByte(string target)
    {
        var uri = new Uri(_proxy.Url, target);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(uri.GetLeftPart(UriPartial.Authority) + target, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true }));

        using var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(target, (await response.ReadJson()).GetProperty("raw").GetString());
    }
}

/// <summary>OpenAI clients look a model up by id (models.retrieve); LM Studio has no such endpoint, so the proxy answers.</summary>
public sealed class ModelLookupTests
{
    [Fact(Timeout = 30000)]
    public async Task OpenAiClient_RetrievesAModelWhoseIdHasASlash_AndAnAlias()
    {
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:Aliases:gpt-4o-mini"] = "qwen/qwen3-8b" });
        await Eventually.Until(() => env.Proxy.Refreshed);
        var client = new OpenAIModelClient(new System.ClientModel.ApiKeyCredential("lm-studio"), new OpenAIClientOptions { Endpoint = new Uri(env.Proxy.Url, "/v1") });

        OpenAIModel model = await client.GetModelAsync("qwen/qwen3-8b");
        OpenAIModel alias = await client.GetModelAsync("gpt-4o-mini");

        Assert.Equal("qwen/qwen3-8b", model.Id);
        Assert.Equal("qwen", model.OwnedBy);
        Assert.Equal("gpt-4o-mini", alias.Id);
        Assert.Equal(0, env.Simulator.State.TotalLoads);
    }

    [Theory(Timeout = 30000)]
    [InlineData("/v1/models/gpt-5-turbo")]
    [InlineData("/v1/models/qwen%2Fqwen3-9b")]
    public async Task UnknownId_Gets404ModelNotFound(string path)
    {
        await using var env = await GateEnvironment.StartAsync();
        await Eventually.Until(() => env.Proxy.Refreshed);

        using var response = await env.Client.GetAsync(path);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("model_not_found", await response.ErrorCode());
    }

    [Fact(Timeout = 30000)]
    public async Task EncodedId_IsTheSameModelAsThePlainOne()
    {
        await using var env = await GateEnvironment.StartAsync();
        await Eventually.Until(() => env.Proxy.Refreshed);

        using var encoded = await env.Client.GetAsync("/v1/models/google%2Fgemma-3-1b");
        using var plain = await env.Client.GetAsync("/v1/models/google/gemma-3-1b");

        var a = await encoded.ReadJson();
        Assert.Equal(HttpStatusCode.OK, encoded.StatusCode);
        Assert.Equal("google/gemma-3-1b", a.GetProperty("id").GetString());
        Assert.Equal("model", a.GetProperty("object").GetString());
        Assert.Equal(JsonSerializer.Serialize(a), JsonSerializer.Serialize(await plain.ReadJson()));
    }
}
