using System.Text.Json.Serialization;

namespace LmsProxy.Loading;

// What the loaders send to LM Studio and read from lms, generated at build time (no reflection; Native AOT).

/// <summary>POST /api/v1/models/load.</summary>
internal sealed record LoadRequest(string Model, int? ContextLength);

/// <summary>POST /api/v1/models/unload.</summary>
internal sealed record UnloadRequest(string InstanceId);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(LoadRequest))]
[JsonSerializable(typeof(UnloadRequest))]
internal sealed partial class LoadingJson : JsonSerializerContext;

/// <summary>`lms ls --json`, read with lms's own property names.</summary>
[JsonSerializable(typeof(List<LmsCliLoader.LmsModel>))]
[JsonSerializable(typeof(List<LmsInstance>))]
internal sealed partial class LmsJson : JsonSerializerContext;
