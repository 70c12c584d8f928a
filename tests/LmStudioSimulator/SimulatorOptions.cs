namespace LmStudioSimulator;

/// <summary>
/// How the simulated LM Studio behaves; every knob maps to a behaviour in shared/lmstudio-contract.md or its addendum
/// of 2026-12 (findings F1–F27). Points the addendum rates low confidence are options, off by default.
/// </summary>
public sealed class SimulatorOptions
{
    /// <summary>How long a load (JIT, REST or lms) takes.</summary>
    public TimeSpan LoadTime { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// A load that stops: lms's spinner stays at this percentage (frames still come every 80 ms, as when LM Studio
    /// hangs in the middle of a load) and the load never ends until its lms is killed. Null: loads end after LoadTime.
    /// </summary>
    public int? LoadStallsAt { get; set; }

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

    /// <summary>
    /// Each answer's delay varies by up to this fraction either way (0.15: 300 ms answers take 255–345 ms), as real answers
    /// vary with their length; 0: every answer takes exactly <see cref="ResponseDelay"/> (parallel slots then run in lock-step).
    /// </summary>
    public double ResponseJitter { get; set; }

    /// <summary>
    /// An inference request whose body contains this text is cut off before any answer (the connection is closed), as
    /// LM Studio does with a body over its own size limit or a prompt that crashes its engine; null: never.
    /// </summary>
    public string? AbortRequestsContaining { get; set; }

    /// <summary>
    /// The charset REST load answers declare; a bogus one makes the proxy's reading of the answer throw (a stand-in for
    /// an unexpected failure in the middle of a load). Null: plain application/json.
    /// </summary>
    public string? LoadAnswerCharset { get; set; }

    /// <summary>
    /// "Require Authentication" on, with this token (LM Studio's form: sk-lm-8 alnum:20 alnum, with a colon; F16).
    /// Without it, or with another one, /api/v1/* answers 401 invalid_api_key and /v1/* and /api/v0/* answer HTTP 200
    /// "Unexpected endpoint or method" (F16, medium confidence: field reports). /lmstudio-greeting stays open. Null: auth off.
    /// </summary>
    public string? RequireApiToken { get; set; }

    /// <summary>
    /// The host runs LM Studio Bionic 1.1.0 instead of LM Studio (F26). ASSUMPTION: the greeting's shape is not in any
    /// source; it is modelled as {"lmstudio":true,"app":"bionic","version":"1.1.0"}. Unknown routes answer 404, and any
    /// multipart body 415, as the 2026-09-24 probe of Bionic 1.1.0 found (F17, medium; Bionic 1.1.1 was seen answering 200).
    /// </summary>
    public bool Bionic { get; set; }

    /// <summary>
    /// AutoFit (MLX engine, F22, medium confidence): every load gets this context length whatever was asked for; it is
    /// what /api/v1/models, /api/v0/models and lms ps report back. Null: the asked context (or 4096) is loaded.
    /// </summary>
    public int? AutoFitContextLength { get; set; }

    /// <summary>
    /// F15 (LOW confidence, one field report): instances loaded under a variant key (key@quant) are missing from
    /// /api/v1/models, while /api/v0/models (state) and lms ps still show them. Off by default.
    /// </summary>
    public bool HideVariantInstancesFromV1 { get; set; }

    /// <summary>
    /// The selected variant of a multi-variant model moves to the next one whenever a load of it starts, as when another
    /// download finished (F3's field log: "same command, different weights, no warning"). Off by default.
    /// </summary>
    public bool FlipSelectedVariantOnLoad { get; set; }

    /// <summary>Other machines linked through LM Link (F10, F21): their instances show in lms ps/ls with their deviceIdentifier.</summary>
    public List<SimDevice> LinkedDevices { get; set; } = [];

    /// <summary>
    /// LM Link's preferred device (an identifier of <see cref="LinkedDevices"/>): REST loads and lms loads without --local
    /// go there (F4, F21: "the model will always load on your preferred device"). Null: loads stay on this machine.
    /// </summary>
    public string? PreferredDevice { get; set; }

    /// <summary>
    /// Whether /api/v1/models lists instances on linked devices too (undocumented, F21: LOW confidence). Off by default;
    /// lms ps --json always lists them (F10).
    /// </summary>
    public bool LinkedInstancesInV1 { get; set; }

    /// <summary>Flags the fake lms rejects as an older lms does (commander: "error: unknown option '--local'"), e.g. ["--local"].</summary>
    public List<string> LmsUnknownFlags { get; set; } = [];

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
/// <param name="Variants">
/// A multi-variant ("staff pick") model's variant keys, e.g. ["google/gemma-4-31b@4bit", "google/gemma-4-31b@8bit"];
/// the first is selected at start. Its path is its key (F3). Null or empty: a single-file model.
/// </param>
public sealed record SimModel(string Key, string Type, string Path, long SizeBytes = 1_000_000_000, IReadOnlyList<string>? Variants = null)
{
    public string Publisher => Key.Contains('/') ? Key[..Key.IndexOf('/')] : "local";

    public bool HasVariants => Variants is { Count: > 1 };

    /// <summary>A multi-variant model with two quantizations (4bit, 8bit) whose path is its key, like google/gemma-4-31b.</summary>
    public static SimModel WithVariants(string key, long sizeBytes = 1_000_000_000, params string[] quants) =>
        new(key, "llm", key, sizeBytes, [.. (quants.Length > 0 ? quants : ["4bit", "8bit"]).Select(q => $"{key}@{q}")]);
}

/// <summary>A machine linked through LM Link (lms link status: deviceIdentifier, deviceName).</summary>
public sealed record SimDevice(string Identifier, string Name);
