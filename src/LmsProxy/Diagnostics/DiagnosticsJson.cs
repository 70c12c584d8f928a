using System.Text.Json;
using System.Text.Json.Serialization;

namespace LmsProxy.Diagnostics;

// The proxy's own endpoints' JSON (camelCase, as ASP.NET writes by default), generated at build time: no reflection,
// so the Native AOT build writes exactly what the JIT build writes.

internal sealed record HealthBody(string Status);

internal sealed record ReadyBody(string Status, string Reason, Dictionary<string, bool> Hosts);

internal sealed record ActionError(string Error);

internal sealed record ActionAccepted(string Model, string Action, string Message);

internal sealed record PinResult(string Model, string Action, bool Pinned);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(HealthBody))]
[JsonSerializable(typeof(ReadyBody))]
[JsonSerializable(typeof(ActionError))]
[JsonSerializable(typeof(ActionAccepted))]
[JsonSerializable(typeof(PinResult))]
[JsonSerializable(typeof(StatusReport))]
internal sealed partial class DiagnosticsJson : JsonSerializerContext;
