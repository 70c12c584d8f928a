namespace LmsProxy.Scheduling.Policy;

/// <summary>The policy's working copies of hosts and instances: what one round of decisions changes as it decides.</summary>
internal static partial class PlacementPolicy
{
    /// <summary>A host as this round of decisions changes it.</summary>
    private sealed class WorkingHost(HostView view)
    {
        public HostView View { get; } = view;
        public string Name => View.Name;
        public bool Busy { get; set; } = view.Busy;

        /// <summary>An earlier group in this round drains models here to make its room: no later group may load here.</summary>
        public bool SwapUnderWay { get; set; }
        public List<WorkingInstance> Instances { get; } = [];

        public WorkingInstance? Find(string model) => Instances.FirstOrDefault(i => string.Equals(i.Model, model, StringComparison.OrdinalIgnoreCase) && i.State != InstanceState.Gone);

        public WorkingHost Init()
        {
            foreach (var i in View.Instances) Instances.Add(new WorkingInstance(this, i));
            return this;
        }
    }

    private sealed class WorkingInstance
    {
        private static readonly InstanceView Loading = new("", InstanceState.Loading, 0, 4, 0, 0, 0, true, false, false, 0, null);

        /// <summary>One the policy decided to load in this round.</summary>
        public WorkingInstance(WorkingHost host, string model, long estimatedBytes) : this(host, Loading with { Model = model, EstimatedBytes = estimatedBytes })
        {
        }

        public WorkingInstance(WorkingHost host, InstanceView view)
        {
            Host = host;
            View = view;
            Model = view.Model;
            State = view.State;
            InFlight = view.InFlight;
        }

        public WorkingHost Host { get; }
        public InstanceView View { get; }
        public string Model { get; }
        public InstanceState State { get; set; }
        public int InFlight { get; set; }
        public int Parallel => Math.Max(1, View.Parallel);
        public int SpillAt => Host.View.Limits.SpillAt > 0 ? Host.View.Limits.SpillAt : Parallel;
        public long EstimatedBytes => View.EstimatedBytes;
    }
}
