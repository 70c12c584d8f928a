using System.Text.Json;

namespace LmsProxy.Tests.Infrastructure;

public static class Json
{
    public static StringContent Body(string json) => new(json, System.Text.Encoding.UTF8, "application/json");

    public static StringContent Chat(string model, bool stream = false) =>
        Body(JsonSerializer.Serialize(new { model, stream, messages = new[] { new { role = "user", content = "hi" } } }));

    public static async Task<JsonElement> ReadJson(this HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    /// <summary>The OpenAI-style error code of a proxy error body.</summary>
    public static async Task<string?> ErrorCode(this HttpResponseMessage response) =>
        (await response.ReadJson()).GetProperty("error").GetProperty("code").GetString();

    public static async Task<string?> ErrorMessage(this HttpResponseMessage response) =>
        (await response.ReadJson()).GetProperty("error").GetProperty("message").GetString();
}
