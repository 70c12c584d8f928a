using System.ClientModel;
using System.ClientModel.Primitives;
using System.Diagnostics;
using System.Text;
using LmsProxy.Tests.Infrastructure;
using LmStudioSimulator;
using OpenAI;
using OpenAI.Chat;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Waiting;

/// <summary>
/// The proof of issue 19 with a real intermediary: nginx with a 5 s read timeout in front of the proxy, a 12 s load
/// behind it. With the keep-alive opt-ins, the official OpenAI client gets a streamed and a non-streamed answer;
/// without them nginx gives up on both (504), which shows the test can fail.
/// </summary>
public sealed class IntermediaryTimeoutTests(ITestOutputHelper output)
{
    private const string Model = "qwen/qwen3-8b";
    private static readonly TimeSpan LoadTime = TimeSpan.FromSeconds(12);
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    [Fact(Timeout = 90000)]
    public async Task BehindNginxWithA5sReadTimeout_A12sLoad_SucceedsWithTheOptIns_AndTimesOutWithout()
    {
        if (!Nginx.Installed)
        {
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, $"{Nginx.Executable} is missing in CI");
            output.WriteLine("skipped: nginx not installed (apt-get install nginx)");
            return;
        }
        // Both set-ups run at once (the loads take 12 s each).
        var withOptIns = RunAsync(new Dictionary<string, string?>
        {
            ["LmsProxy:StreamKeepAlive"] = "comment",
            ["LmsProxy:NonStreamingKeepAlive"] = "true",
            ["LmsProxy:KeepAliveAfter"] = "00:00:01", // below the intermediary's timeout
        });
        var without = RunAsync([]);
        var (streamedOn, plainOn) = await withOptIns;
        var (streamedOff, plainOff) = await without;

        Assert.Equal("Hello token1 token2 token3 token4", streamedOn.Text);
        Assert.Equal("Hello from qwen/qwen3-8b.", plainOn.Text);
        Assert.True(streamedOn.Took > LoadTime && plainOn.Took > LoadTime, "both waited for the whole load");
        Assert.Equal(504, streamedOff.Status);
        Assert.Equal(504, plainOff.Status);
        Assert.True(streamedOff.Took < LoadTime && plainOff.Took < LoadTime, "nginx gave up before the load ended");
    }

    private sealed record Outcome(string? Text, int? Status, TimeSpan Took);

    private async Task<(Outcome Streamed, Outcome Plain)> RunAsync(Dictionary<string, string?> settings)
    {
        await using var env = await GateEnvironment.StartAsync(new SimulatorOptions { LoadTime = LoadTime }, settings);
        await using var nginx = await Nginx.StartAsync(env.Proxy.Url, ReadTimeout);
        // No retries: a retried 504 would only hide what the first try met.
        var chat = new ChatClient(Model, new ApiKeyCredential("lm-studio"), new OpenAIClientOptions
        {
            Endpoint = new Uri(nginx.Url, "/v1"),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = TimeSpan.FromSeconds(60),
        });

        var streamed = Measure(async () =>
        {
            var text = new StringBuilder();
            await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
            {
                foreach (var part in update.ContentUpdate) text.Append(part.Text);
            }
            return text.ToString();
        });
        var plain = Measure(async () => (await chat.CompleteChatAsync([new UserChatMessage("hi")])).Value.Content[0].Text);
        var outcomes = (await streamed, await plain);
        output.WriteLine($"{(settings.Count == 0 ? "without" : "with")} opt-ins: streamed {outcomes.Item1}, not streamed {outcomes.Item2}");
        return outcomes;
    }

    private static async Task<Outcome> Measure(Func<Task<string>> call)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var text = await call();
            return new(text, null, Stopwatch.GetElapsedTime(started));
        }
        catch (ClientResultException ex)
        {
            return new(null, ex.Status, Stopwatch.GetElapsedTime(started));
        }
    }
}
