namespace LmsProxy.Keys;

/// <summary>One named API key (<c>LmsProxy:Keys:&lt;name&gt;</c>): its secret or the secret's hash, what it may do, and its limits.</summary>
internal sealed class KeyOptions
{
    /// <summary>The secret clients send. Give this or <see cref="KeyHash"/>, not both.</summary>
    public string? Key { get; set; }

    /// <summary>SHA-256 of the secret (UTF-8), 64 hex digits, so that the settings file need not hold the secret.</summary>
    public string? KeyHash { get; set; }

    public KeyRole Role { get; set; } = KeyRole.Inference;

    /// <summary>Model keys, aliases or globs (<c>qwen/*</c>) it may use; empty: every model.</summary>
    public List<string> Models { get; set; } = [];

    public KeyPriority Priority { get; set; } = KeyPriority.Normal;

    /// <summary>Most of its requests served at once; more wait (never refused). 0: no limit.</summary>
    public int MaxConcurrent { get; set; }

    /// <summary>Requests accepted in any 60 s; past it: 429. 0: no limit.</summary>
    public int RequestsPerMinute { get; set; }

    /// <summary>Prompt plus completion tokens per UTC day; once spent: 429 until midnight UTC. 0: no limit.</summary>
    public long TokensPerDay { get; set; }

    /// <summary>Seconds of LM Studio's time (forward to last byte) per UTC day; once spent: 429 until midnight UTC. 0: no limit.</summary>
    public double GpuSecondsPerDay { get; set; }
}

internal enum KeyRole
{
    /// <summary>Inference, the model list, and its own activity and usage.</summary>
    Inference,

    /// <summary>Also the status page's actions, cancels, model loads and unloads, and every key's activity and usage.</summary>
    Operator,
}

/// <summary>The key's class in the fair queue: a weight within a model's slots, and a head start when models compete for memory.</summary>
internal enum KeyPriority
{
    Batch,
    Normal,
    Interactive,
}
