using System.Net;
using System.Text;
using System.Text.Json;
using LmsProxy.Tests.Infrastructure;

namespace LmsProxy.Tests.Gate;

/// <summary>
/// Broken framing and broken bytes, sent byte for byte: each gets a 400 (or 413) in the protocol's error shape, one
/// log line without a stack trace, and never a 500.
/// </summary>
public sealed class MalformedInputTests : IAsyncLifetime
{
    private GateEnvironment _env = null!;

    public async Task InitializeAsync() => _env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:MaxRequestBodyBytes"] = "65536" });

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private string Chunked(string path, string firstChunkLine) =>
        $"POST {path} HTTP/1.1\r\nHost: {_env.Proxy.Url.Authority}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{firstChunkLine}\r\n";

    /// <summary>No warning or error reached the log, and nothing logged carries a stack trace.</summary>
    private void AssertQuietLog()
    {
        var loud = _env.Proxy.Logs.Lines.Where(l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Warning", StringComparison.Ordinal)
            || l.StartsWith("Critical", StringComparison.Ordinal) || l.Contains("   at ", StringComparison.Ordinal)).ToList();
        Assert.True(loud.Count == 0, string.Join(Environment.NewLine, loud));
    }

    [Theory(Timeout = 20000)]
    [InlineData("/v1/chat/completions", "FFFFFFFFFFFFFFFFFF")] // overflows the chunk size
    [InlineData("/v1/chat/completions", "ZZ")]
    [InlineData("/v1/chat/completions", "-1")]
    [InlineData("/v1/messages", "FFFFFFFFFFFFFFFFFF")]
    [InlineData("/api/v1/models/load", "FFFFFFFFFFFFFFFFFF")]
    [InlineData("/api/v1/models/load", "ZZ")]
    public async Task BadChunkSize_Gets400InTheProtocolsShape_LoggedOnceWithoutAStackTrace(string path, string chunkSize)
    {
        var answer = await RawHttp.SendAsync(_env.Proxy.Url, Chunked(path, chunkSize));

        Assert.Equal(400, answer.Status);
        Assert.StartsWith("application/json", answer.Header("Content-Type"));
        var error = JsonDocument.Parse(answer.Body).RootElement;
        if (path == "/v1/messages")
        {
            Assert.Equal("error", error.GetProperty("type").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("error").GetProperty("type").GetString());
        }
        else
        {
            Assert.Equal("request_body_error", error.GetProperty("error").GetProperty("code").GetString());
        }
        // One line for the request, at Information; none from Kestrel or YARP.
        await Eventually.Until(() => _env.Proxy.Logs.Lines.Any(l => l.StartsWith("Information LmsProxy.Requests: POST " + path + " ", StringComparison.Ordinal) && l.Contains("status=400", StringComparison.Ordinal)));
        await Task.Delay(200); // a late log line from the server would come now
        Assert.Single(_env.Proxy.Logs.Lines, l => l.Contains(path, StringComparison.Ordinal));
        AssertQuietLog();
        Assert.Equal(0, _env.Simulator.State.InferenceRequests);
    }

    [Theory(Timeout = 20000)]
    [InlineData("Content-Type: text/plain", 415)]
    [InlineData("Content-Type: application/json\r\nOrigin: http://evil.example", 403)]
    public async Task RefusedRequestWithABrokenBody_GetsItsRefusal_AndTheUnreadBodyLogsNothing(string headers, int status)
    {
        var answer = await RawHttp.SendAsync(_env.Proxy.Url,
            $"POST /v1/chat/completions HTTP/1.1\r\nHost: {_env.Proxy.Url.Authority}\r\n{headers}\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n");

        Assert.Equal(status, answer.Status);
        await Task.Delay(300); // the server drains what the refusal left unread
        AssertQuietLog();
    }

    [Theory(Timeout = 20000)]
    [InlineData(new byte[] { 0xC3, 0x28 })] // a lead byte without its continuation
    [InlineData(new byte[] { 0xFF })]
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 })] // an encoded surrogate
    public async Task InvalidUtf8InTheModelName_Gets400(byte[] invalid)
    {
        var body = Encoding.UTF8.GetBytes("{\"model\":\"qwen").Concat(invalid).Concat(Encoding.UTF8.GetBytes("\",\"messages\":[]}")).ToArray();
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new("application/json");

        using var response = await _env.Client.PostAsync("/v1/chat/completions", content);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_model", await response.ErrorCode());
        AssertQuietLog();
        Assert.Equal(0, _env.Simulator.State.InferenceRequests);
    }

    [Theory(Timeout = 20000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task OversizedBodyOnANonInferenceRoute_Gets413(bool chunked)
    {
        var big = "{\"model\":\"qwen/qwen3-8b\",\"junk\":\"" + new string('x', 100_000) + "\"}";
        using var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big)));
        content.Headers.ContentType = new("application/json");
        if (!chunked) content.Headers.ContentLength = Encoding.UTF8.GetByteCount(big);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/models/load") { Content = content };
        request.Headers.TransferEncodingChunked = chunked;

        using var response = await _env.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("request_too_large", await response.ErrorCode());
        Assert.Contains("LmsProxy:MaxRequestBodyBytes", await response.ErrorMessage());
        // The body is read whole before anything is forwarded.
        Assert.Equal(0, _env.Simulator.State.RequestsTo("/api/v1/models/load"));
        Assert.Single(_env.Proxy.Logs.Lines, l => l.Contains("POST /api/v1/models/load status=413", StringComparison.Ordinal));
        AssertQuietLog();
    }
}
