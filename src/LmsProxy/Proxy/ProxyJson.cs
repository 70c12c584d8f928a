using System.Text.Json.Serialization;

namespace LmsProxy.Proxy;

// The JSON the proxy writes in OpenAI's, Anthropic's and LM Studio's shapes (snake_case), generated at build time:
// no reflection, so the Native AOT build writes exactly what the JIT build writes.

/// <summary>GET /v1/models/{id}: OpenAI's model object.</summary>
internal sealed record ModelDescription(string Id, string Object, int Created, string OwnedBy);

/// <summary>POST /v1/messages/count_tokens: Anthropic's answer.</summary>
internal sealed record TokenCount(long InputTokens);

/// <summary>The Responses API's error event inside a stream.</summary>
internal sealed record ResponsesErrorEvent(string Type, string Code, string Message, string? Param, int SequenceNumber);

/// <summary>LM Studio's native chat error event inside a stream.</summary>
internal sealed record NativeErrorEvent(string Type, NativeErrorDetail Error);

internal sealed record NativeErrorDetail(string Type, string Message, string Code);

/// <summary>An empty chat.completion.chunk: a keep-alive that OpenAI clients parse and ignore.</summary>
internal sealed record ChatChunk(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices);

internal sealed record ChatChunkChoice(int Index, EmptyDelta Delta, string? Logprobs, string? FinishReason);

/// <summary>Writes {}.</summary>
internal sealed record EmptyDelta;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(ModelDescription))]
[JsonSerializable(typeof(TokenCount))]
[JsonSerializable(typeof(ResponsesErrorEvent))]
[JsonSerializable(typeof(NativeErrorEvent))]
[JsonSerializable(typeof(ChatChunk))]
[JsonSerializable(typeof(string))]
internal sealed partial class ProxyJson : JsonSerializerContext;
