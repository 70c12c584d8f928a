namespace LmsProxy.Models;

/// <summary>Rules for model names that come from clients: they may end up as an <c>lms</c> argument.</summary>
internal static class ModelName
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

    /// <summary>
    /// Whether <paramref name="name"/> matches <paramref name="pattern"/>, where * is any run of characters and ? one
    /// character, ignoring case (a host's Models allow-list). Greedy with one backtrack point: linear for one *.
    /// </summary>
    public static bool Matches(string pattern, string name)
    {
        int p = 0, n = 0, star = -1, resume = 0;
        while (n < name.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || char.ToUpperInvariant(pattern[p]) == char.ToUpperInvariant(name[n])))
            {
                p++;
                n++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                resume = n;
            }
            else if (star >= 0)
            {
                p = star + 1;
                n = ++resume;
            }
            else
            {
                return false;
            }
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}
