using System.Text.Json;
using System.Text.Json.Nodes;

namespace LmStudioSimulator;

/// <summary>OpenAI-shaped answers, as LM Studio gives them.</summary>
internal static class Responses
{
    private static long _ids;

    private static string NextId(string prefix) => $"{prefix}-sim{Interlocked.Increment(ref _ids)}";
    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private static object Usage => new { prompt_tokens = 5, completion_tokens = 5, total_tokens = 10 };

    public static async Task Chat(InferenceCall call)
    {
        var (id, model) = (NextId("chatcmpl"), call.Model);
        var tools = call.Body["tools"] as JsonArray;
        var toolName = tools is { Count: > 0 } ? Json.String(tools[0]?["function"]?["name"]) : null;
        if (call.Stream)
        {
            await StreamAsync(call, i => new
            {
                id, @object = "chat.completion.chunk", created = Now, model, system_fingerprint = model,
                choices = new[] { new { index = 0, delta = (object)new { role = "assistant", content = Word(i) }, logprobs = (object?)null, finish_reason = (string?)null } },
            }, new
            {
                id, @object = "chat.completion.chunk", created = Now, model, system_fingerprint = model,
                choices = new[] { new { index = 0, delta = (object)new { }, logprobs = (object?)null, finish_reason = (string?)"stop" } },
            }, IncludeUsage(call) ? new
            {
                id, @object = "chat.completion.chunk", created = Now, model, system_fingerprint = model,
                choices = Array.Empty<object>(), usage = new { prompt_tokens = 5, completion_tokens = call.Options.StreamEvents, total_tokens = 5 + call.Options.StreamEvents },
            } : null);
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
        }).ExecuteAsync(call.Context);
    }

    public static async Task Completion(InferenceCall call)
    {
        var (id, model) = (NextId("cmpl"), call.Model);
        if (call.Stream)
        {
            await StreamAsync(call, i => new { id, @object = "text_completion", created = Now, model, choices = new[] { new { index = 0, text = Word(i), logprobs = (object?)null, finish_reason = (string?)null } } }, null);
            return;
        }
        await Results.Json(new
        {
            id, @object = "text_completion", created = Now, model,
            choices = new[] { new { index = 0, text = $" and so {model} went on.", logprobs = (object?)null, finish_reason = "stop" } },
            usage = Usage,
        }).ExecuteAsync(call.Context);
    }

    public static async Task Embeddings(InferenceCall call)
    {
        var inputs = call.Body["input"] switch
        {
            JsonArray array => array.Select(n => n?.ToString() ?? "").ToList(),
            { } single => [single.ToString()],
            null => [],
        };
        var base64 = Json.String(call.Body["encoding_format"]) == "base64";
        var data = inputs.Select((text, index) =>
        {
            var vector = Enumerable.Range(0, 8).Select(d => (float)Math.Sin(text.Length + d)).ToArray();
            object embedding = base64 ? Convert.ToBase64String(vector.SelectMany(BitConverter.GetBytes).ToArray()) : vector;
            return new { @object = "embedding", embedding, index };
        });
        await Results.Json(new { @object = "list", data, model = call.Model, usage = new { prompt_tokens = 4, total_tokens = 4 } }).ExecuteAsync(call.Context);
    }

    /// <summary>/v1/responses: stateful through previous_response_id, which only the host that stored it knows.</summary>
    public static async Task Response(InferenceCall call)
    {
        var previous = Json.String(call.Body["previous_response_id"]);
        if (previous is not null && !call.State.StoredResponses.ContainsKey(previous))
        {
            await Results.Json(new { error = new { message = $"Response '{previous}' not found", type = "invalid_request_error", code = "not_found" } }, statusCode: 404).ExecuteAsync(call.Context);
            return;
        }
        var id = Ids.New("resp_");
        var input = call.Body["input"]?.ToJsonString() ?? "";
        var text = previous is null ? $"Hello from {call.Model}." : $"Continuing {previous} with {call.Model}.";
        if (call.Stream)
        {
            await StreamResponseAsync(call, id, previous, text, input);
            return;
        }
        call.State.StoredResponses[id] = input;
        await Results.Json(ResponseObject(id, call.Model, previous, "completed", [MessageItem(Ids.New("msg_"), "completed", text)], withUsage: true))
            .ExecuteAsync(call.Context);
    }

    /// <summary>
    /// The OpenAI Responses stream: named events whose data carries "type" and a running "sequence_number"; the
    /// text arrives as output_text deltas, and response.completed carries the whole response. No [DONE] line.
    /// </summary>
    private static async Task StreamResponseAsync(InferenceCall call, string id, string? previous, string text, string input)
    {
        var itemId = Ids.New("msg_");
        var sequence = 0;
        (string, object) Event(string type, object fields)
        {
            var data = JsonSerializer.SerializeToNode(fields)!.AsObject();
            data.Insert(0, "type", type);
            data.Insert(1, "sequence_number", sequence++);
            return (type, data);
        }

        await Sse.WriteAllAsync(call, Events());

        IEnumerable<(string, object)> Events()
        {
            yield return Event("response.created", new { response = ResponseObject(id, call.Model, previous, "in_progress", [], withUsage: false) });
            yield return Event("response.in_progress", new { response = ResponseObject(id, call.Model, previous, "in_progress", [], withUsage: false) });
            yield return Event("response.output_item.added", new { output_index = 0, item = MessageItem(itemId, "in_progress", null) });
            yield return Event("response.content_part.added", new { item_id = itemId, output_index = 0, content_index = 0, part = OutputText("") });
            foreach (var delta in Sse.Split(text, call.Options.StreamEvents))
            {
                yield return Event("response.output_text.delta", new { item_id = itemId, output_index = 0, content_index = 0, delta, logprobs = Array.Empty<object>() });
            }
            yield return Event("response.output_text.done", new { item_id = itemId, output_index = 0, content_index = 0, text, logprobs = Array.Empty<object>() });
            yield return Event("response.content_part.done", new { item_id = itemId, output_index = 0, content_index = 0, part = OutputText(text) });
            yield return Event("response.output_item.done", new { output_index = 0, item = MessageItem(itemId, "completed", text) });
            // Stored only once the answer is complete (a stream cut off earlier leaves nothing to continue from),
            // and before the last event, so that a client reading it can continue at once.
            call.State.StoredResponses[id] = input;
            yield return Event("response.completed", new { response = ResponseObject(id, call.Model, previous, "completed", [MessageItem(itemId, "completed", text)], withUsage: true) });
        }
    }

    private static object MessageItem(string id, string status, string? text) => new
    {
        type = "message", id, status, role = "assistant", content = text is null ? [] : new[] { OutputText(text) },
    };

    private static object OutputText(string text) => new { type = "output_text", text, annotations = Array.Empty<object>() };

    private static object ResponseObject(string id, string model, string? previous, string status, object[] output, bool withUsage) => new
    {
        id, @object = "response", created_at = Now, status, error = (object?)null, incomplete_details = (object?)null,
        instructions = (string?)null, max_output_tokens = (int?)null, model, output, previous_response_id = previous,
        parallel_tool_calls = true, store = true, temperature = 1.0, top_p = 1.0, tool_choice = "auto", tools = Array.Empty<object>(),
        text = new { format = new { type = "text" } }, truncation = "disabled", metadata = new { },
        usage = withUsage
            ? new { input_tokens = 5, output_tokens = 5, total_tokens = 10, input_tokens_details = new { cached_tokens = 0 }, output_tokens_details = new { reasoning_tokens = 0 } }
            : null,
    };

    /// <summary>stream_options.include_usage: a last chunk with no choices and the usage, as OpenAI and LM Studio send it.</summary>
    private static bool IncludeUsage(InferenceCall call) => Json.Bool(call.Body["stream_options"]?["include_usage"]) == true;

    private static string Word(int i) => i == 0 ? "Hello" : $" token{i}";

    /// <summary>Chat-completions style server-sent events: data-only, one per token with a pause between, then [DONE].</summary>
    private static async Task StreamAsync(InferenceCall call, Func<int, object> chunk, object? last, object? usage = null)
    {
        Sse.Begin(call.Context);
        if (call.Options.FirstTokenDelay > TimeSpan.Zero)
        {
            // The headers go out first, as LM Studio sends them before prompt processing ends.
            await call.Context.Response.StartAsync(call.Aborted);
            await call.Context.Response.Body.FlushAsync(call.Aborted);
            await Task.Delay(call.Options.FirstTokenDelay, call.Aborted);
        }
        for (var i = 0; i < call.Options.StreamEvents; i++)
        {
            await Sse.WriteAsync(call.Context, null, JsonSerializer.Serialize(chunk(i)), call.Aborted);
            await Task.Delay(call.Options.TokenDelay, call.Aborted);
        }
        if (last is not null) await Sse.WriteAsync(call.Context, null, JsonSerializer.Serialize(last), call.Aborted);
        if (usage is not null) await Sse.WriteAsync(call.Context, null, JsonSerializer.Serialize(usage), call.Aborted);
        await Sse.WriteAsync(call.Context, null, "[DONE]", call.Aborted);
    }
}
