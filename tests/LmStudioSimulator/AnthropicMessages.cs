using System.Text.Json.Nodes;

namespace LmStudioSimulator;

/// <summary>
/// Anthropic-compatible POST /v1/messages (LM Studio 0.4.1+, docs 1_developer/4_anthropic-compat/messages.md) in
/// Anthropic's own shapes. With tools and no tool_result to answer, the model calls the first tool.
/// count_tokens is not LM Studio's: it falls through to the "Unexpected endpoint" answer (capacity-signals §4).
/// </summary>
internal static class AnthropicMessages
{
    private const string ToolInput = """{"location":"Paris"}""";

    public static async Task Messages(InferenceCall call)
    {
        var id = Ids.New("msg_", 24);
        var toolName = ToolToCall(call.Body);
        var text = $"Hello from {call.Model}.";
        var inputTokens = Json.EstimateTokens(call.Body["messages"]);
        var outputTokens = call.Options.StreamEvents;
        var stopReason = toolName is null ? "end_turn" : "tool_use";
        var toolUseId = Ids.New("toolu_", 24);
        object block = toolName is null
            ? new { type = "text", text }
            : new { type = "tool_use", id = toolUseId, name = toolName, input = new { location = "Paris" } };

        if (!call.Stream)
        {
            await Results.Json(new
            {
                id, type = "message", role = "assistant", model = call.Model, content = new[] { block },
                stop_reason = stopReason, stop_sequence = (string?)null, usage = new { input_tokens = inputTokens, output_tokens = outputTokens },
            }).ExecuteAsync(call.Context);
            return;
        }

        // A streamed block starts empty and fills through deltas: text_delta for text, input_json_delta for tool input.
        object emptyBlock = toolName is null ? new { type = "text", text = "" } : new { type = "tool_use", id = toolUseId, name = toolName, input = new { } };
        var deltas = toolName is null
            ? Sse.Split(text, call.Options.StreamEvents).Select(piece => (object)new { type = "text_delta", text = piece })
            : Sse.Split(ToolInput, call.Options.StreamEvents).Select(piece => (object)new { type = "input_json_delta", partial_json = piece });

        var events = new List<(string, object)>
        {
            ("message_start", new
            {
                type = "message_start",
                message = new
                {
                    id, type = "message", role = "assistant", model = call.Model, content = Array.Empty<object>(),
                    stop_reason = (string?)null, stop_sequence = (string?)null, usage = new { input_tokens = inputTokens, output_tokens = 1 },
                },
            }),
            ("content_block_start", new { type = "content_block_start", index = 0, content_block = emptyBlock }),
        };
        events.AddRange(deltas.Select(delta => ("content_block_delta", (object)new { type = "content_block_delta", index = 0, delta })));
        events.Add(("content_block_stop", new { type = "content_block_stop", index = 0 }));
        events.Add(("message_delta", new { type = "message_delta", delta = new { stop_reason = stopReason, stop_sequence = (string?)null }, usage = new { output_tokens = outputTokens } }));
        events.Add(("message_stop", new { type = "message_stop" }));
        await Sse.WriteAllAsync(call, events);
    }

    /// <summary>The first tool's name, unless the last user message already carries a tool_result to answer.</summary>
    private static string? ToolToCall(JsonObject body)
    {
        if (body["tools"] is not JsonArray { Count: > 0 } tools) return null;
        var lastUser = (body["messages"] as JsonArray)?.LastOrDefault(m => Json.String(m?["role"]) == "user");
        var answersTool = lastUser?["content"] is JsonArray blocks && blocks.Any(b => Json.String(b?["type"]) == "tool_result");
        return answersTool ? null : Json.String(tools[0]?["name"]);
    }
}
