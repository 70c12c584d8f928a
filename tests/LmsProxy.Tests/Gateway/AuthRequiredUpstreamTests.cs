using System.Net;
using LmsProxy.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LmsProxy.Tests.Gateway;

/// <summary>
/// LM Studio with authentication on and no UpstreamApiKey: the proxy cannot see model state, so it forwards, and LM
/// Studio's 401 becomes a 502 upstream_auth_failed that names the host and the setting (issue 17 §3). It used to reach
/// the client as LM Studio's own 401, which reads as "your key is wrong" to a client that sent none.
/// </summary>
public sealed class AuthRequiredUpstreamTests
{
    [Fact(Timeout = 15000)]
    public async Task InferenceRequest_WhenLmStudioRefusesTheProxy_Gets502NamingTheSetting()
    {
        using var lmStudio = WireMockServer.Start();
        lmStudio.Given(Request.Create().UsingAnyMethod())
            .RespondWith(Response.Create().WithStatusCode(401).WithHeader("Content-Type", "application/json").WithBody("{\"error\":\"Unauthorized\"}"));
        await using var proxy = new ProxyApp(new Uri(lmStudio.Url!));
        using var client = proxy.Client();

        using var response = await client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_auth_failed", await response.ErrorCode());
        Assert.Contains("LmsProxy:UpstreamApiKey", await response.ErrorMessage());
    }
}
