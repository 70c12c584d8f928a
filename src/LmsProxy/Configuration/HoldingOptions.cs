namespace LmsProxy.Configuration;

/// <summary>How requests are held while their model loads or waits for room, and what a waiting client receives (keys directly under <c>LmsProxy</c>).</summary>
internal sealed class HoldingOptions
{
    /// <summary>Longest a request is held while its model loads (re-sends included) before it gets a 503.</summary>
    public TimeSpan HoldTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Most requests held per model at once; one more gets a 503 with Retry-After.</summary>
    public int MaxHeldPerModel { get; set; } = 1000;

    /// <summary>How requests beyond an instance's parallel slots wait in the proxy: fair (by key and priority) or arrival (first come).</summary>
    public Sharing.QueueOrder QueueOrder { get; set; } = Sharing.QueueOrder.Fair;

    /// <summary>
    /// Most bytes of request bodies held at once, across all models (an inference body is read whole before it is held
    /// or forwarded); a request past it gets a 503 with Retry-After.
    /// </summary>
    public long MaxHeldBodyBytes { get; set; } = 256 * 1024 * 1024;

    /// <summary>What a held streaming request receives while it waits: off, comment, chunk or reasoning.</summary>
    public StreamKeepAliveMode StreamKeepAlive { get; set; } = StreamKeepAliveMode.Off;

    /// <summary>How long a streaming request is held silently before keep-alives start.</summary>
    public TimeSpan KeepAliveAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Time between two keep-alives (streamed and not streamed).</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Opt-in: a held request that is not streamed gets 200 application/json after KeepAliveAfter, then a space every
    /// KeepAliveInterval (JSON allows leading whitespace), then the body; a failure after the 200 is an error body.
    /// </summary>
    public bool NonStreamingKeepAlive { get; set; }
}

internal enum StreamKeepAliveMode
{
    Off,
    Comment,
    Chunk,

    /// <summary>Chat streams get the wait's state as reasoning_content deltas (chat UIs show it as thinking).</summary>
    Reasoning,
}
