using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using LmsProxy.Tests.Infrastructure;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Operability;

// The page's tests and the small Chromium driver (DevTools protocol) they share, which is why this file is over 300 lines.
/// <summary>The status page, as a person sees it: rendered by headless Chromium, with its script run against /status.</summary>
public sealed class StatusPageBrowserTests(ITestOutputHelper output)
{
    private const string Chromium = "/usr/bin/chromium";
    private const long Budget = 20_000_000_000;

    [Fact(Timeout = 60000)]
    public async Task StatusPage_ShowsUpstreamLoaderAndModelStates()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        var dom = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        Assert.Contains("LM Studio " + env.Simulator.Url, dom);
        Assert.Contains("<span class=\"ok\">answers</span>", dom);
        Assert.Contains("Loader: lms", dom);
        Assert.Matches("<section class=\"host\" data-host=\"default\"><h3>default <span class=\"pill healthy\">healthy</span><span class=\"muted\"> " + Regex.Escape(env.Simulator.Url.ToString()) + "</span></h3>", dom);
        // Model, state, held, last load; then in flight, pinned, last used, memory, hosts, waiting, last error, buttons.
        Assert.Matches("<tr data-model=\"qwen/qwen3-8b\"><td>qwen/qwen3-8b</td><td class=\"ok\">idle</td><td>0</td><td>\\d+ ms</td><td></td><td class=\"ok\"></td>"
            + "<td>\\d+ s ago</td><td>\\d+\\.\\d GB</td><td>default</td><td class=\"busy\"></td><td class=\"bad\"></td><td class=\"actions\">", dom);
        Assert.Contains("<tr data-model=\"google/gemma-3-1b\"><td>google/gemma-3-1b</td><td class=\"muted\">not loaded</td>", dom);
    }

    [Fact(Timeout = 60000)]
    public async Task ActivityTable_ShowsAStreamInFlightAtTheTop_FinishedRequestsBelow_AndTheChartPerModel()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync(new LmStudioSimulator.SimulatorOptions { TokenDelay = TimeSpan.FromMilliseconds(200), StreamEvents = 300 });
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"))) { }
        using (await env.Client.PostAsync("/v1/chat/completions", Json.Chat("nobody/has-this"))) { }
        using var client = env.Proxy.Client();
        using var stream = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json.Chat("qwen/qwen3-8b", stream: true) }, HttpCompletionOption.ResponseHeadersRead);
        await Eventually.Until(async () => (await (await env.Client.GetAsync("/activity")).Content.ReadAsStringAsync()).Contains("\"state\":\"streaming\""));

        var dom = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        // #, started, state, time, model, host, client, key, status, held, load, TTFT, tokens, tok/s, error, actions.
        Assert.Matches("<tbody id=\"activity\"><tr data-activity=\"3\" class=\"live\"><td>3</td><td>[^<]+</td><td class=\"busy\">streaming</td><td>[\\d.]+ m?s</td>"
            + "<td>qwen/qwen3-8b</td><td>default</td><td>127.0.0.1</td><td></td><td></td><td>0 ms</td><td></td><td></td><td></td><td></td><td></td>"
            + "<td><button data-cancel=\"3\">Cancel</button></td></tr>"
            + "<tr data-activity=\"2\"><td>2</td><td>[^<]+</td><td class=\"muted\">done</td><td>\\d+ ms</td><td>nobody/has-this</td><td></td><td>127.0.0.1</td><td></td><td class=\"bad\">404</td>.*?<td class=\"bad\">not_found</td><td></td></tr>"
            + "<tr data-activity=\"1\"><td>1</td>.*?<td>qwen/qwen3-8b</td><td>default</td>.*?<td>200</td><td>[\\d.]+ m?s</td><td>[\\d.]+ m?s</td><td>[\\d.]+ m?s</td><td>5 → 5</td>", dom);
        // A bar per model and minute (the tokens-per-second line needs a record with a rate, which a warm simulator's instant answer may not give).
        Assert.Matches("<rect [^>]*data-model=\"qwen/qwen3-8b\"", dom);
        Assert.Matches("<rect [^>]*data-model=\"nobody/has-this\"", dom);
        Assert.Contains("<span>nobody/has-this</span>", dom);
    }

    [Fact(Timeout = 60000)]
    public async Task MemoryBar_ShowsEachLoadedModelsShareOfTheBudget()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync(settings: new Dictionary<string, string?> { ["LmsProxy:Capacity:MemoryBudgetBytes"] = Budget.ToString(CultureInfo.InvariantCulture) });
        using var qwen = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        using var gemma = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("google/gemma-3-1b"));
        var instances = (await (await env.Client.GetAsync("/status")).ReadJson()).GetProperty("hosts")[0].GetProperty("instances").EnumerateArray()
            .ToDictionary(i => i.GetProperty("model").GetString()!, i => i.GetProperty("estimatedBytes").GetInt64());

        var dom = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        Assert.Equal(HttpStatusCode.OK, gemma.StatusCode);
        foreach (var (model, estimated) in instances)
        {
            var segment = Tag(dom, "<div class=\"seg idle\" data-segment=\"" + model + "\"");
            var width = Regex.Match(segment, "style=\"width: ([\\d.]+)%;\"");
            Assert.True(width.Success, segment);
            Assert.InRange(double.Parse(width.Groups[1].Value, CultureInfo.InvariantCulture), 100.0 * estimated / Budget - 0.01, 100.0 * estimated / Budget + 0.01);
            Assert.Contains(segment + model[(model.IndexOf('/') + 1)..] + "</div>", dom);
        }
        Assert.Equal(2, instances.Count);
        var used = instances.Values.Sum() / 1e9;
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"<div class=\"memory-text\">{used:0.0} GB of 20.0 GB, 2 of ∞ models<span class=\"muted\"> — budget from Capacity:MemoryBudgetBytes</span></div>"), dom);
    }

    [Fact(Timeout = 60000)]
    public async Task MemoryBar_WithoutABudget_SaysItIsUnknown()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        var dom = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        // Scaled to what is loaded: the one model fills the bar.
        Assert.Contains("style=\"width: 100%;\"", Tag(dom, "<div class=\"seg idle\" data-segment=\"qwen/qwen3-8b\""));
        Assert.Matches("\\d+\\.\\d GB of \\? GB, 1 of ∞ models<span class=\"muted\"> — budget unknown, learned from LM Studio's refusals</span>", dom);
    }

    [Fact(Timeout = 60000)]
    public async Task Timeline_ShowsLoadsAndUnloads_NewestFirst_WithTotals()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        using var unload = await PostActionAsync(env.Client, "qwen/qwen3-8b", "unload");
        await Eventually.Until(() => !env.Proxy.IsLoaded("qwen/qwen3-8b") && env.Proxy.Scheduler.Snapshot().Events.Any(e => e.Kind == "unload"));

        var dom = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        var timeline = dom[dom.IndexOf("<tbody id=\"events\">", StringComparison.Ordinal)..];
        output.WriteLine(timeline[..timeline.IndexOf("</tbody>", StringComparison.Ordinal)]);
        Assert.Matches("^<tbody id=\"events\">"
            + "<tr data-kind=\"unload\"><td class=\"muted\" title=\"[^\"]+\">\\d+ s ago</td><td><span class=\"kind unload\">▼ unload</span></td><td>default</td><td>qwen/qwen3-8b</td><td>operator</td><td></td></tr>"
            + "<tr data-kind=\"load\"><td class=\"muted\" title=\"[^\"]+\">\\d+ s ago</td><td><span class=\"kind load\">▲ load</span></td><td>default</td><td>qwen/qwen3-8b</td><td></td><td>(\\d+ ms|\\d+\\.\\d s)</td></tr>"
            + "</tbody>", timeline);
        Assert.Contains("<div id=\"totals\" class=\"muted\">Unloads: operator 1 · Swaps: 0</div>", dom);
        // On the strip a load is a bar as long as it took, an unload a tick.
        Assert.Matches("^<div class=\"mark load\"(?=.* title=\"load qwen/qwen3-8b on default \\()(?=.* style=\"left: [\\d.]+%; width: [\\d.]+%;\")", Tag(dom, "<div class=\"mark load\""));
        Assert.Matches("^<div class=\"mark unload\"(?=.* title=\"unload qwen/qwen3-8b on default: operator \\()(?=.* style=\"left: [\\d.]+%;\")", Tag(dom, "<div class=\"mark unload\""));
    }

    [Fact(Timeout = 60000)]
    public async Task Actions_ButtonsNameTheModel_AndAPinShowsOnTheNextRender()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));

        var before = await RenderAsync(new Uri(env.Proxy.Url, "/"));
        using var withoutHeader = await env.Client.PostAsync("/models/qwen%2Fqwen3-8b/pin", null);
        using var pin = await PostActionAsync(env.Client, "qwen/qwen3-8b", "pin");
        var after = await RenderAsync(new Uri(env.Proxy.Url, "/"));

        Assert.Contains("<td class=\"actions\"><button data-action=\"load\" data-model=\"qwen/qwen3-8b\" disabled=\"\">Load</button>"
            + "<button data-action=\"unload\" data-model=\"qwen/qwen3-8b\">Unload</button><button data-action=\"pin\" data-model=\"qwen/qwen3-8b\">Pin</button></td>", before);
        Assert.Contains("<td class=\"actions\"><button data-action=\"load\" data-model=\"google/gemma-3-1b\">Load</button>"
            + "<button data-action=\"unload\" data-model=\"google/gemma-3-1b\" disabled=\"\">Unload</button><button data-action=\"pin\" data-model=\"google/gemma-3-1b\">Pin</button></td>", before);
        Assert.Equal(HttpStatusCode.BadRequest, withoutHeader.StatusCode);
        Assert.Equal(HttpStatusCode.OK, pin.StatusCode);
        Assert.True((await pin.ReadJson()).GetProperty("pinned").GetBoolean());
        Assert.Matches("<tr data-model=\"qwen/qwen3-8b\"><td>qwen/qwen3-8b</td><td class=\"ok\">idle</td><td>0</td><td>\\d+ ms</td><td></td><td class=\"ok\">pinned</td>", after);
        Assert.Contains("<button data-action=\"unpin\" data-model=\"qwen/qwen3-8b\">Unpin</button>", after);
        Tag(after, "<div class=\"seg idle pinned\" data-segment=\"qwen/qwen3-8b\"");
    }

    /// <summary>A real click in the page: its own fetch (encoded key, action header) reaches the scheduler and its answer is shown.</summary>
    [Fact(Timeout = 60000)]
    public async Task Actions_ClickingPinAndUnload_InThePage_ActsAndShowsTheAnswer()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync();
        using var response = await env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        await using var browser = await DevToolsPage.OpenAsync(new Uri(env.Proxy.Url, "/"));

        var pinned = await browser.ClickAsync("button[data-action=pin][data-model=\"qwen/qwen3-8b\"]");
        var isPinned = env.Proxy.Scheduler.Snapshot().Hosts.Single().Instances.Single(i => i.Model == "qwen/qwen3-8b").Pinned;
        var unloaded = await browser.ClickAsync("button[data-action=unload][data-model=\"qwen/qwen3-8b\"]");
        await Eventually.Until(() => !env.Proxy.IsLoaded("qwen/qwen3-8b"));

        Assert.Equal("'qwen/qwen3-8b' pinned.", pinned);
        Assert.True(isPinned);
        Assert.StartsWith("'qwen/qwen3-8b' takes no new requests", unloaded);
    }

    /// <summary>A load's bar moves on by itself: the page draws each "status" event of GET /events (it no longer polls).</summary>
    [Fact(Timeout = 60000)]
    public async Task LoadProgressBar_ShowsLmsPercentageAndTimeLeft_AndMovesOnFromEvents()
    {
        if (!ChromiumInstalled()) return;
        await using var env = await GateEnvironment.StartAsync(new LmStudioSimulator.SimulatorOptions { LoadTime = TimeSpan.FromSeconds(8) });
        var chat = env.Client.PostAsync("/v1/chat/completions", Json.Chat("qwen/qwen3-8b"));
        await using var browser = await DevToolsPage.OpenAsync(new Uri(env.Proxy.Url, "/"));
        const string Bar = "document.querySelector('tr[data-model=\"qwen/qwen3-8b\"] .progress')?.dataset.progress > 5";

        var first = await browser.DomAsync(Bar);
        await Task.Delay(1500);
        var later = await browser.DomAsync();
        (await chat).Dispose();

        static (int Percent, string Label) Read(string dom)
        {
            var row = dom[dom.IndexOf("<tr data-model=\"qwen/qwen3-8b\">", StringComparison.Ordinal)..];
            var percent = Regex.Match(row, "class=\"progress\"[^>]*data-progress=\"(\\d+)\"|data-progress=\"(\\d+)\"[^>]*class=\"progress\"");
            var label = Regex.Match(row, "<span class=\"eta\">([^<]*)</span>");
            Assert.True(percent.Success && label.Success, row[..Math.Min(row.Length, 1500)]);
            return (int.Parse(percent.Groups[1].Success ? percent.Groups[1].Value : percent.Groups[2].Value, CultureInfo.InvariantCulture), label.Groups[1].Value);
        }
        var (before, beforeLabel) = Read(first);
        var (after, afterLabel) = Read(later);

        Assert.Matches("^\\d+% · ~[\\d.]+ s left$", beforeLabel); // lms's own percentage: no "(estimate)"
        Assert.Matches("^\\d+% · ~[\\d.]+ s left$", afterLabel);
        Assert.True(after > before, $"the bar moved from {before}% to {after}% without a reload");
    }

    private bool ChromiumInstalled()
    {
        if (File.Exists(Chromium)) return true;
        // .ci/run installs Debian's chromium; on a developer machine without it this check cannot run.
        Assert.True(Environment.GetEnvironmentVariable("CI") is null, $"{Chromium} is missing in CI");
        output.WriteLine($"skipped: {Chromium} not installed (apt-get install chromium)");
        return false;
    }

    /// <summary>The opening tag that begins with <paramref name="start"/>; Chromium orders the attributes after that as it likes.</summary>
    private static string Tag(string dom, string start)
    {
        var at = dom.IndexOf(start, StringComparison.Ordinal);
        Assert.True(at >= 0, $"no {start} in {dom}");
        return dom[at..(dom.IndexOf('>', at) + 1)];
    }

    private static Task<HttpResponseMessage> PostActionAsync(HttpClient client, string model, string action)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/models/" + Uri.EscapeDataString(model) + "/" + action);
        request.Headers.Add("X-LmsProxy-Action", "1");
        return client.SendAsync(request);
    }

    private static ProcessStartInfo Headless(DirectoryInfo profile, params string[] arguments) =>
        new(Chromium,
        [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile.FullName, .. arguments,
        ])
        { RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = Encoding.UTF8 };

    /// <summary>
    /// The DOM after the page's scripts ran: its first /status and /activity were drawn, and a moment more. (Not
    /// --dump-dom with virtual time: the page keeps GET /events open, and pending requests stop virtual time.)
    /// </summary>
    private static async Task<string> RenderAsync(Uri page)
    {
        await using var browser = await DevToolsPage.OpenAsync(page);
        return await browser.DomAsync();
    }

    /// <summary>A page open in headless Chromium, driven over the DevTools protocol (Runtime.evaluate) to click as a person would.</summary>
    private sealed class DevToolsPage : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly DirectoryInfo _profile;
        private readonly ClientWebSocket _socket = new();
        private int _id;

        private DevToolsPage(Process process, DirectoryInfo profile) => (_process, _profile) = (process, profile);

        public static async Task<DevToolsPage> OpenAsync(Uri page)
        {
            var profile = Directory.CreateTempSubdirectory("chromium-");
            var browser = new DevToolsPage(Process.Start(Headless(profile, "--remote-debugging-port=0", page.ToString()))!, profile);
            _ = browser._process.StandardOutput.ReadToEndAsync();
            _ = browser._process.StandardError.ReadToEndAsync();
            // Chromium writes the port it chose into the profile; its /json/list names the page's own socket.
            var portFile = Path.Combine(profile.FullName, "DevToolsActivePort");
            await Eventually.Until(() => File.Exists(portFile) && File.ReadAllLines(portFile).Length >= 2, TimeSpan.FromSeconds(20));
            using var http = new HttpClient { BaseAddress = new Uri("http://127.0.0.1:" + File.ReadAllLines(portFile)[0]) };
            string? socketUrl = null;
            await Eventually.Until(async () =>
            {
                var targets = JsonDocument.Parse(await http.GetStringAsync("/json/list")).RootElement.EnumerateArray();
                socketUrl = targets.Where(t => t.GetProperty("type").GetString() == "page").Select(t => t.GetProperty("webSocketDebuggerUrl").GetString()).FirstOrDefault();
                return socketUrl is not null;
            }, TimeSpan.FromSeconds(20));
            await browser._socket.ConnectAsync(new Uri(socketUrl!), CancellationToken.None);
            // The first page is about:blank; evaluating while it navigates fails ("Execution context was destroyed").
            await Eventually.Until(async () =>
            {
                try
                {
                    return await browser.EvaluateAsync("location.href + ' ' + document.readyState") == page + " complete";
                }
                catch (InvalidOperationException)
                {
                    return false;
                }
            }, TimeSpan.FromSeconds(20));
            return browser;
        }

        /// <summary>The page's DOM once it has drawn /status (and given its other fetches a moment), as --dump-dom prints it.</summary>
        public async Task<string> DomAsync(string? until = null)
        {
            var script = $$"""
                (async () => {
                  const pause = ms => new Promise(resolve => setTimeout(resolve, ms));
                  for (let i = 0; i < 400 && document.getElementById("refreshed").textContent === "never"; i++) await pause(50);
                  for (let i = 0; i < 400 && !({{until ?? "true"}}); i++) await pause(50);
                  await pause(600);
                  return document.documentElement.outerHTML;
                })()
                """;
            return "<!DOCTYPE html>\n" + await EvaluateAsync(script);
        }

        /// <summary>Clicks the button once it is rendered and returns the message the page then shows.</summary>
        public async Task<string> ClickAsync(string selector)
        {
            var script = $$"""
                (async () => {
                  const pause = () => new Promise(resolve => setTimeout(resolve, 50));
                  const message = document.getElementById("message");
                  for (let i = 0; i < 200 && !document.querySelector({{JsonSerializer.Serialize(selector)}}); i++) await pause();
                  message.textContent = "";
                  document.querySelector({{JsonSerializer.Serialize(selector)}}).click();
                  for (let i = 0; i < 200 && !message.textContent; i++) await pause();
                  return message.textContent;
                })()
                """;
            return await EvaluateAsync(script);
        }

        private async Task<string> EvaluateAsync(string expression)
        {
            var result = await SendAsync("Runtime.evaluate", new { expression, awaitPromise = true, returnByValue = true });
            return result.GetProperty("result").TryGetProperty("value", out var value) ? value.ToString() : throw new InvalidOperationException(result.ToString());
        }

        private async Task<JsonElement> SendAsync(string method, object parameters)
        {
            var id = ++_id;
            await _socket.SendAsync(JsonSerializer.SerializeToUtf8Bytes(new { id, method, @params = parameters }), WebSocketMessageType.Text, true, CancellationToken.None);
            var buffer = new byte[64 * 1024];
            while (true)
            {
                using var message = new MemoryStream();
                WebSocketReceiveResult received;
                do
                {
                    received = await _socket.ReceiveAsync(buffer, CancellationToken.None);
                    message.Write(buffer, 0, received.Count);
                }
                while (!received.EndOfMessage);
                var answer = JsonDocument.Parse(message.ToArray()).RootElement;
                if (answer.TryGetProperty("id", out var answerId) && answerId.GetInt32() == id)
                {
                    return answer.TryGetProperty("result", out var result) ? result.Clone() : throw new InvalidOperationException(answer.ToString());
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _socket.Dispose();
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            _process.Dispose();
            _profile.Delete(recursive: true);
        }
    }
}
