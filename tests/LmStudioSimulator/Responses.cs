using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LmStudioSimulator;

/// <summary>OpenAI-shaped answers, as LM Studio gives them.</summary>
internal static class Responses
{
    private static readonly ConcurrentDictionary<string, string> StoredResponses = new();
    private static long _ids;

    private static string NextId(string prefix) => $"{prefix}-sim{Interlocked.Increment(ref _ids)}";
    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private static object Usage => new { prompt_tokens = 5, completion_tokens = 5, total_tokens = 10 };

    public static async Task Chat(HttpContext context, SimulatorState state, JsonObject body, string model)
    {
        var id = NextId("chatcmpl");
        var tools = body["tools"] as JsonArray;
        var toolName = tools is { Count: > 0 } ? tools[0]?["function"]?["name"]?.GetValue<string>() : null;
        if (body["stream"]?.GetValue<bool>() == true)
        {
            await StreamAsync(context, state, i => new
            {
                id, @object = "chat.completion.chunk", created = Now, model, system_fingerprint = model,
                choices = new[] { new { index = 0, delta = (object)new { role = "assistant", content = Word(i) }, logprobs = (object?)null, finish_reason = (string?)null } },
            }, new
            {
                id, @object = "chat.completion.chunk", created = Now, model, system_fingerprint = model,
                choices = new[] { new { index = 0, delta = (object)new { }, logprobs = (object?)null, finish_reason = (string?)"stop" } },
            });
            return;
        }
        object message = toolName is null
            ? new { role = "assistant", content = $"Hello from {model}." }
            : new { role = "assistant", content = (string?)null, tool_calls = new[] { new { id = "call_sim1", type = "function", function = new { name = toolName, arguments = "{\"location\":\"Paris\"}" } } } };
        await Results.Json(new
        {
            id, @object = "chat.completion", created = Now, model,
            choices = new[] { new { index = 0, message, logprobs = (object?)null, finish_reason = toolName is null ? "stop" : "tool_calls" } },
            usage = Usage, system_fingerprint = model,
        }).ExecuteAsync(context);
    }

    public static async Task Completion(HttpContext context, SimulatorState state, JsonObject body, string model)
    {
        var id = NextId("cmpl");
        if (body["stream"]?.GetValue<bool>() == true)
        {
            await StreamAsync(context, state, i => new { id, @object = "text_completion", created = Now, model, choices = new[] { new { index = 0, text = Word(i), logprobs = (object?)null, finish_reason = (string?)null } } }, null);
            return;
        }
        await Results.Json(new
        {
            id, @object = "text_completion", created = Now, model,
            choices = new[] { new { index = 0, text = $" and so {model} went on.", logprobs = (object?)null, finish_reason = "stop" } },
            usage = Usage,
        }).ExecuteAsync(context);
    }

    public static async Task Embeddings(HttpContext context, SimulatorState state, JsonObject body, string model)
    {
        var inputs = body["input"] switch
        {
            JsonArray array => array.Select(n => n?.ToString() ?? "").ToList(),
            { } single => [single.ToString()],
            null => [],
        };
        var base64 = body["encoding_format"]?.GetValue<string>() == "base64";
        var data = inputs.Select((text, index) =>
        {
            var vector = Enumerable.Range(0, 8).Select(d => (float)Math.Sin(text.Length + d)).ToArray();
            object embedding = base64 ? Convert.ToBase64String(vector.SelectMany(BitConverter.GetBytes).ToArray()) : vector;
            return new { @object = "embedding", embedding, index };
        });
        await Results.Json(new { @object = "list", data, model, usage = new { prompt_tokens = 4, total_tokens = 4 } }).ExecuteAsync(context);
    }

    public static async Task Response(HttpContext context, SimulatorState state, JsonObject body, string model)
    {
        var previous = body["previous_response_id"]?.GetValue<string>();
        if (previous is not null && !StoredResponses.ContainsKey(previous))
        {
            await Results.Json(new { error = new { message = $"Response '{previous}' not found", type = "invalid_request_error", code = "not_found" } }, statusCode: 404).ExecuteAsync(context);
            return;
        }
        var id = NextId("resp");
        var input = body["input"]?.ToJsonString() ?? "";
        var text = previous is null ? $"Hello from {model}." : $"Continuing {previous} with {model}.";
        StoredResponses[id] = input;
        await Results.Json(new
        {
            id, @object = "response", created_at = Now, status = "completed", model, previous_response_id = previous,
            output = new[] { new { type = "message", id = NextId("msg"), status = "completed", role = "assistant", content = new[] { new { type = "output_text", text, annotations = Array.Empty<object>() } } } },
            parallel_tool_calls = true, tool_choice = "auto", tools = Array.Empty<object>(), temperature = 1.0, top_p = 1.0, text = new { format = new { type = "text" } },
            usage = new { input_tokens = 5, output_tokens = 5, total_tokens = 10, input_tokens_details = new { cached_tokens = 0 }, output_tokens_details = new { reasoning_tokens = 0 } },
        }).ExecuteAsync(context);
    }

    private static string Word(int i) => i == 0 ? "Hello" : $" token{i}";

    /// <summary>Server-sent events, one per token with a pause between, flushed each time, then [DONE].</summary>
    private static async Task StreamAsync(HttpContext context, SimulatorState state, Func<int, object> chunk, object? last)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        var ct = context.RequestAborted;
        for (var i = 0; i < state.Options.StreamEvents; i++)
        {
            await WriteEvent(context, JsonSerializer.Serialize(chunk(i)), ct);
            await Task.Delay(state.Options.TokenDelay, ct);
        }
        if (last is not null) await WriteEvent(context, JsonSerializer.Serialize(last), ct);
        await WriteEvent(context, "[DONE]", ct);
    }

    private static async Task WriteEvent(HttpContext context, string data, CancellationToken ct)
    {
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes($"data: {data}\n\n"), ct);
        await context.Response.Body.FlushAsync(ct);
    }
}
