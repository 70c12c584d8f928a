using System.Text.Json.Nodes;

namespace LmStudioSimulator;

/// <summary>
/// LM Studio's native stateful chat, POST /api/v1/chat. Shapes follow lmstudio-ai/docs @ c6854fb:
/// 1_developer/2_rest/chat.md (request and response fields), 1_developer/2_rest/stateful-chats.mdx (response_id,
/// previous_response_id, store) and 1_developer/2_rest/streaming-events.md (the SSE events, chat.start to chat.end).
/// The docs do not say how an unknown previous_response_id is answered: here 404, as /v1/responses does.
/// </summary>
internal static class NativeChat
{
    public static async Task Chat(InferenceCall call)
    {
        var previous = Json.String(call.Body["previous_response_id"]);
        if (previous is not null && !call.State.StoredChats.ContainsKey(previous))
        {
            await InferenceEndpoint.Error(ApiDialect.NativeV1, 404, "invalid_request", $"Could not find a stored response with id \"{previous}\".")
                .ExecuteAsync(call.Context);
            return;
        }
        var store = Json.Bool(call.Body["store"]) ?? true;
        var text = previous is null ? $"Hello from {call.Model}." : $"Continuing {previous} with {call.Model}.";
        var responseId = store ? Ids.New("resp_") : null;
        var input = call.Body["input"]?.ToJsonString() ?? "";

        if (!call.Stream)
        {
            if (responseId is not null) call.State.StoredChats[responseId] = input;
            await Results.Json(Result(call, text, responseId)).ExecuteAsync(call.Context);
            return;
        }
        await Sse.WriteAllAsync(call, Events(call, text, responseId, input));
    }

    private static IEnumerable<(string, object)> Events(InferenceCall call, string text, string? responseId, string input)
    {
        (string, object) Event(string type, JsonObject? fields = null)
        {
            var data = fields ?? [];
            data.Insert(0, "type", type);
            return (type, data);
        }

        yield return Event("chat.start", new JsonObject { ["model_instance_id"] = call.Model });
        if (call.JitLoadTime is { } loadTime)
        {
            // The load happened before this stream began; its events still come first, as they do in LM Studio.
            yield return Event("model_load.start", new JsonObject { ["model_instance_id"] = call.Model });
            yield return Event("model_load.progress", new JsonObject { ["model_instance_id"] = call.Model, ["progress"] = 0.5 });
            yield return Event("model_load.end", new JsonObject { ["model_instance_id"] = call.Model, ["load_time_seconds"] = loadTime.TotalSeconds });
        }
        yield return Event("prompt_processing.start");
        yield return Event("prompt_processing.progress", new JsonObject { ["progress"] = 0.5 });
        yield return Event("prompt_processing.progress", new JsonObject { ["progress"] = 1.0 });
        yield return Event("prompt_processing.end");
        yield return Event("message.start");
        foreach (var piece in Sse.Split(text, call.Options.StreamEvents)) yield return Event("message.delta", new JsonObject { ["content"] = piece });
        yield return Event("message.end");
        // Stored once complete, before chat.end goes out: a client may continue as soon as it has the id.
        if (responseId is not null) call.State.StoredChats[responseId] = input;
        yield return Event("chat.end", new JsonObject { ["result"] = Result(call, text, responseId) });
    }

    /// <summary>The non-streaming body, also chat.end's result: response_id only when stored.</summary>
    private static JsonObject Result(InferenceCall call, string text, string? responseId)
    {
        var stats = new JsonObject
        {
            ["input_tokens"] = Json.EstimateTokens(call.Body["input"]) + Json.EstimateTokens(call.Body["system_prompt"]),
            ["total_output_tokens"] = call.Options.StreamEvents,
            ["reasoning_output_tokens"] = 0,
            ["tokens_per_second"] = 42.0,
            ["time_to_first_token_seconds"] = 0.05,
        };
        if (call.JitLoadTime is { } loadTime) stats["model_load_time_seconds"] = loadTime.TotalSeconds;
        var result = new JsonObject
        {
            ["model_instance_id"] = call.Model,
            ["output"] = new JsonArray(new JsonObject { ["type"] = "message", ["content"] = text }),
            ["stats"] = stats,
        };
        if (responseId is not null) result["response_id"] = responseId;
        return result;
    }
}
