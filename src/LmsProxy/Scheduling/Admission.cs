using LmsProxy.Hosts;

namespace LmsProxy.Scheduling;

internal enum AdmissionStatus
{
    /// <summary>The request may go: to <see cref="Admission.Host"/>, holding a lease on <see cref="Admission.Leased"/>.</summary>
    Granted,

    /// <summary>LM Studio refuses the proxy's own calls (its auth is on, no token): forward unchecked, LM Studio answers.</summary>
    Unverified,
    NotFound,
    LoadFailed,
    UpstreamUnavailable,
    HoldTimeout,
    QueueFull,
    Cancelled,

    /// <summary>Nothing could ever make room for the model (it alone exceeds the budget, or the rest is pinned).</summary>
    TooLarge,

    /// <summary>The request continues a conversation whose state lives on a host that is down.</summary>
    ConversationHostDown,

    /// <summary>LM Studio keeps answering "not loaded" for a model it lists as loaded.</summary>
    Inconsistent,

    /// <summary>The proxy is stopping.</summary>
    ShuttingDown,

    /// <summary>LM Studio closed the request's connection before answering it, again and again, with the model still loaded.</summary>
    UpstreamAborted,

    /// <summary>No parallel slot of the loaded model came free before the hold deadline (Sharing/SlotQueue).</summary>
    SlotTimeout,
}

/// <summary>How a request's wait for a place to go ended. <see cref="Detail"/> is a client-safe sentence.</summary>
internal readonly record struct Admission(AdmissionStatus Status, LmStudioHost? Host = null, HostedModel? Leased = null, string? Detail = null, TimeSpan Held = default)
{
    public bool CanForward => Status is AdmissionStatus.Granted or AdmissionStatus.Unverified;

    public static Admission Refusal(AdmissionStatus status, string detail) => new(status, Detail: detail);
}

internal static class AdmissionStatusNames
{
    /// <summary>The hold metric's outcome label for a wait that ended so.</summary>
    public static string MetricOutcome(this AdmissionStatus status) => status switch
    {
        AdmissionStatus.Granted => "ready", // the metric's label since it was first published: dashboards use it
        AdmissionStatus.NotFound => "not_found",
        AdmissionStatus.LoadFailed => "load_failed",
        AdmissionStatus.UpstreamUnavailable => "upstream_unavailable",
        AdmissionStatus.HoldTimeout => "hold_timeout",
        AdmissionStatus.QueueFull => "queue_full",
        AdmissionStatus.TooLarge => "too_large",
        AdmissionStatus.ConversationHostDown => "conversation_host_down",
        _ => status.ToString().ToLowerInvariant(),
    };
}
