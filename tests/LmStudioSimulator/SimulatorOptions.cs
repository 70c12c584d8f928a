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

    /// <summary>Pause before a stream's first content event (prompt processing), after its headers went out.</summary>
    public TimeSpan FirstTokenDelay { get; set; } = TimeSpan.Zero;

    /// <summary>Number of content events in a streamed answer.</summary>
    public int StreamEvents { get; set; } = 5;

    /// <summary>
    /// The memory LM Studio's load guardrail allows for all loaded and loading models together; null: unlimited.
    /// A load that would go over it is refused (capacity-signals §1.2–1.5).
    /// </summary>
    public long? MemoryBudgetBytes { get; set; }

    /// <summary>The HTTP status of a guardrail refusal on REST /api/v1/models/load; no source quotes it (capacity-signals §1.3).</summary>
    public int LoadRefusalStatus { get; set; } = 500;

    /// <summary>Inference requests one instance serves at once; more wait in LM Studio's queue (contract §2.4: default 4).</summary>
    public int Parallel { get; set; } = 4;

    /// <summary>How long a non-streaming answer takes to generate, so that a model can be busy for a while.</summary>
    public TimeSpan ResponseDelay { get; set; } = TimeSpan.Zero;

    /// <summary>The downloaded models.</summary>
    public List<SimModel> Models { get; set; } = DefaultModels();

    public static List<SimModel> DefaultModels() =>
    [
        new("qwen/qwen3-8b", "llm", "lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf", 5_030_000_000),
        new("qwen/qwen3-8b-instruct", "llm", "lmstudio-community/Qwen3-8B-Instruct-GGUF/Qwen3-8B-Instruct-Q4_K_M.gguf", 5_030_000_000),
        new("google/gemma-3-1b", "llm", "lmstudio-community/gemma-3-1b-it-GGUF/gemma-3-1b-it-Q4_K_M.gguf", 720_000_000),
        new("text-embedding-nomic-embed-text-v1.5", "embedding", "nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q4_K_M.gguf", 84_000_000),
    ];
}

/// <param name="SizeBytes">The model file's size, LM Studio's size_bytes; the guardrail estimates its memory from it.</param>
public sealed record SimModel(string Key, string Type, string Path, long SizeBytes = 1_000_000_000)
{
    public string Publisher => Key.Contains('/') ? Key[..Key.IndexOf('/')] : "local";
}
