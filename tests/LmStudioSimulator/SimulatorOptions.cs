namespace LmStudioSimulator;

/// <summary>How the simulated LM Studio behaves; every knob maps to a behaviour in shared/lmstudio-contract.md.</summary>
public sealed class SimulatorOptions
{
    /// <summary>How long a load (JIT, REST or lms) takes.</summary>
    public TimeSpan LoadTime { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>JIT on: a request for an unloaded model holds while it loads. Off: "No models loaded" (§2.1).</summary>
    public bool Jit { get; set; }

    /// <summary>400 in recent LM Studio, 404 in 0.3.5 (§2.1).</summary>
    public int NotLoadedStatus { get; set; } = 400;

    /// <summary>Concurrent JIT loads of one model create several instances (key, key:2, ...) (§2.3, bug #1751).</summary>
    public bool DuplicateInstanceBug { get; set; } = true;

    /// <summary>Unload an instance idle for this long; null: never (§2.4).</summary>
    public TimeSpan? IdleTtl { get; set; }

    /// <summary>Pause between streamed events.</summary>
    public TimeSpan TokenDelay { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Number of content events in a streamed answer.</summary>
    public int StreamEvents { get; set; } = 5;

    /// <summary>The downloaded models.</summary>
    public List<SimModel> Models { get; set; } = DefaultModels();

    public static List<SimModel> DefaultModels() =>
    [
        new("qwen/qwen3-8b", "llm", "lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf"),
        new("qwen/qwen3-8b-instruct", "llm", "lmstudio-community/Qwen3-8B-Instruct-GGUF/Qwen3-8B-Instruct-Q4_K_M.gguf"),
        new("google/gemma-3-1b", "llm", "lmstudio-community/gemma-3-1b-it-GGUF/gemma-3-1b-it-Q4_K_M.gguf"),
        new("text-embedding-nomic-embed-text-v1.5", "embedding", "nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q4_K_M.gguf"),
    ];
}

public sealed record SimModel(string Key, string Type, string Path)
{
    public string Publisher => Key.Contains('/') ? Key[..Key.IndexOf('/')] : "local";
}
