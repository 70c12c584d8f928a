namespace LmsProxy.Sharing;

/// <summary>The order in which requests waiting for an instance's slots get them (LmsProxy:QueueOrder).</summary>
internal enum QueueOrder
{
    /// <summary>A weighted fair queue across keys: interactive before normal before batch by weight, equal shares within one.</summary>
    Fair,

    /// <summary>First come, first served, as LM Studio itself would (the comparison in the fairness benchmark).</summary>
    Arrival,
}
