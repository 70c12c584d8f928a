using System.Net;
using System.Text;
using LmsProxy.Proxy;

namespace LmsProxy.Tests.Units;

/// <summary>The held body goes with its headers in one write when it was offered for that very request; else as YARP streams it.</summary>
public sealed class WholeBodySenderTests
{
    [Fact]
    public async Task AnOfferedBody_ReplacesTheStreamedContent_WithItsHeaders()
    {
        var (invoker, seen) = Invoker();
        var request = Request("{\"model\":\"m\"}");
        UpstreamInvoker.OfferWholeBody(request, Body("{\"model\":\"m\"}"));

        await invoker.SendAsync(request, CancellationToken.None);

        var content = Assert.IsType<ReadOnlyMemoryContent>(seen.Single());
        Assert.Equal("application/json", content.Headers.ContentType?.MediaType);
        Assert.Equal(13, content.Headers.ContentLength);
        Assert.Equal("{\"model\":\"m\"}", await content.ReadAsStringAsync());
    }

    [Fact]
    public async Task AnOfferForAnotherRequest_IsNotUsed_AndDoesNotOutliveTheNextSend()
    {
        var (invoker, seen) = Invoker();
        UpstreamInvoker.OfferWholeBody(Request("{}"), Body("{\"model\":\"other\"}"));

        var first = Request("{\"model\":\"mine\"}");
        await invoker.SendAsync(first, CancellationToken.None);
        var second = Request("{\"model\":\"mine\"}");
        await invoker.SendAsync(second, CancellationToken.None);

        Assert.All(seen, c => Assert.IsType<StreamContent>(c));
        Assert.Equal("{\"model\":\"mine\"}", await seen[0].ReadAsStringAsync());
    }

    private static (HttpMessageInvoker Invoker, List<HttpContent> Seen) Invoker()
    {
        var seen = new List<HttpContent>();
        var sender = new UpstreamInvoker.WholeBodySender { InnerHandler = new Recorder(seen) };
        return (new HttpMessageInvoker(sender), seen);
    }

    private static HttpRequestMessage Request(string body)
    {
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(body)));
        content.Headers.TryAddWithoutValidation("Content-Type", "application/json");
        content.Headers.ContentLength = Encoding.UTF8.GetByteCount(body);
        return new HttpRequestMessage(HttpMethod.Post, "http://lmstudio.test/v1/chat/completions") { Content = content };
    }

    private static WholeBody Body(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        return new WholeBody(bytes, bytes.Length);
    }

    private sealed class Recorder(List<HttpContent> seen) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            seen.Add(request.Content!);
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK));
        }
    }
}
