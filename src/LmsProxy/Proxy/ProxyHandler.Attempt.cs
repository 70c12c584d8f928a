using LmsProxy.Hosts;
using LmsProxy.Scheduling;
using Yarp.ReverseProxy.Forwarder;

namespace LmsProxy.Proxy;

/// <summary>One try of a request, and what the re-send loop keeps between tries.</summary>
internal sealed partial class ProxyHandler
{
    private enum AttemptKind
    {
        /// <summary>No try yet.</summary>
        None,
        Forwarded,
        Refused,
        NotLoaded,
        Unreachable,
        CutOff,

        /// <summary>The forward failed for a reason a re-send cannot fix (see <see cref="FailureKind.Failed"/>).</summary>
        Failed,
    }

    private readonly record struct Attempt(AttemptKind Kind, LmStudioHost? Host = null, HostedModel? Leased = null, ForwarderError Error = ForwarderError.None, Admission Refusal = default);

    private sealed class RequestState(ProxyHandler handler, HttpContext context, ModelRequest request, LmStudioHost? pin, long deadline, StreamKeepAlive? keepAlive)
    {
        public StreamKeepAlive? KeepAlive { get; } = keepAlive;
        public ProxyHandler Handler { get; } = handler;
        public HttpContext Context { get; } = context;
        public ModelRequest Request { get; } = request;
        public LmStudioHost? Pin { get; } = pin;
        public long Deadline { get; } = deadline;
        public TimeSpan Held { get; set; }

        /// <summary>What the previous try came to; the next try acts on it.</summary>
        public Attempt Last { get; set; }

        public int Resends { get; set; }

        /// <summary>Its place while it waits (what the keep-alives tell).</summary>
        public Scheduler.WaitTicket? Ticket { get; init; }
        public int CutOffs { get; set; }
        public HashSet<LmStudioHost> Unreachable { get; } = [];
    }
}
