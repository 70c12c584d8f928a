namespace LmsProxy.Storage;

/// <summary>
/// What the scheduler and the affinity map keep across a restart: small key-value entries by kind. Loaded once at
/// construction; saved on change. Save never blocks and never throws: the write happens later, off the request path.
/// </summary>
internal interface IStateStore
{
    /// <summary>The entries of one kind, oldest first.</summary>
    IReadOnlyList<KeyValuePair<string, string>> Load(string kind);

    /// <summary>Sets an entry; a null value removes it.</summary>
    void Save(string kind, string key, string? value);
}

/// <summary>The kinds of state entries, and how their keys are made.</summary>
internal static class StateKinds
{
    /// <summary>Model key → "true"/"false" (an operator's pin or unpin).</summary>
    public const string Pin = "pin";

    /// <summary>Host name → learned memory ceiling in bytes.</summary>
    public const string Ceiling = "ceiling";

    /// <summary>Model key → learned footprint in bytes.</summary>
    public const string Footprint = "footprint";

    /// <summary><see cref="HostModel"/> → last load time in milliseconds.</summary>
    public const string LoadTime = "load_time";

    /// <summary>Response id → host name.</summary>
    public const string Affinity = "affinity";

    public static string HostModel(string host, string model) => host + "\n" + model;

    public static (string Host, string Model) SplitHostModel(string key)
    {
        var at = key.IndexOf('\n');
        return at < 0 ? ("", key) : (key[..at], key[(at + 1)..]);
    }
}
