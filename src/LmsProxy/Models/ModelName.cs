namespace LmsProxy.Models;

/// <summary>Rules for model names that come from clients: they may end up as an <c>lms</c> argument.</summary>
public static class ModelName
{
    public const int MaxLength = 256;

    /// <summary>Null when <paramref name="name"/> is acceptable, else why not.</summary>
    public static string? Problem(string? name)
    {
        if (string.IsNullOrWhiteSpace(name)) return "the model name is empty.";
        if (name.Length > MaxLength) return $"the model name is longer than {MaxLength} characters.";
        if (name[0] == '-') return "the model name must not start with '-'.";
        foreach (var c in name)
        {
            if (char.IsControl(c)) return "the model name contains a control character.";
        }
        if (name.Trim().Length != name.Length) return "the model name has leading or trailing spaces.";
        return null;
    }
}
