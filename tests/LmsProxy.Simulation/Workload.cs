namespace LmsProxy.Simulation;

/// <summary>A model as LM Studio has it: its size (what it really takes in memory) and how long a load takes.</summary>
internal sealed record SimModel(string Key, long Bytes, TimeSpan LoadTime);

/// <summary>One LM Studio host of a workload: what it really holds, what the proxy is told, what it has downloaded.</summary>
internal sealed record SimHostSpec(string Name, long TrueMemory, long ConfiguredBudget, int MaxLoadedModels, TimeSpan IdleUnloadAfter, TimeSpan? MaxSwapWait,
    bool EvictForeign, int Parallel, IReadOnlyList<string> Downloaded, IReadOnlyList<string> Allowed, string? ForeignModel);

/// <summary>A client that sends requests for one model back to back, each taking <see cref="Duration"/> to answer, with its key's priority.</summary>
internal sealed record SimClient(int Id, string Model, TimeSpan Start, TimeSpan Think, TimeSpan Duration, string? PinHost,
    LmsProxy.Keys.KeyPriority Priority = LmsProxy.Keys.KeyPriority.Normal);

/// <summary>Something that happens to the world at a time: a host dies or comes back, a model is evicted, a setting changes.</summary>
internal sealed record SimFault(TimeSpan At, string Kind, string Host, string? Model = null, long Value = 0);

/// <summary>A whole workload, generated from a seed: the same seed gives the same workload, and so the same run.</summary>
internal sealed record Workload(int Seed, IReadOnlyList<SimHostSpec> Hosts, IReadOnlyList<SimModel> Models, IReadOnlyList<SimClient> Clients,
    IReadOnlyList<SimFault> Faults, IReadOnlyList<string> Pinned, TimeSpan Length, double LoadFailureRate, double UnloadFailureRate, double CancelRate)
{
    public static Workload Generate(int seed)
    {
        var random = new Random(seed);
        TimeSpan Seconds(double min, double max) => TimeSpan.FromMilliseconds(Math.Round(1000 * (min + random.NextDouble() * (max - min))));
        const long Gb = 1_000_000_000;

        var models = Enumerable.Range(0, random.Next(2, 9))
            .Select(i => new SimModel($"m{i}", (long)(Gb * (0.5 + random.NextDouble() * 11.5)), Seconds(0.3, 10))).ToList();
        var hosts = new List<SimHostSpec>();
        for (var h = 0; h < random.Next(1, 5); h++)
        {
            var memory = (long)(Gb * (8 + random.NextDouble() * 24));
            var downloaded = models.Where(_ => random.NextDouble() < 0.7).Select(m => m.Key).ToList();
            if (downloaded.Count == 0) downloaded.Add(models[random.Next(models.Count)].Key);
            var allowed = random.NextDouble() < 0.25 ? downloaded.Where(_ => random.NextDouble() < 0.7).ToList() : [];
            TimeSpan? swap = random.NextDouble() < 0.6 ? null : TimeSpan.FromSeconds(new[] { 0, 2, 5, 10 }[random.Next(4)]);
            hosts.Add(new SimHostSpec($"h{h}", memory,
                ConfiguredBudget: random.NextDouble() < 0.5 ? 0 : (long)(memory * (0.85 + random.NextDouble() * 0.15)),
                MaxLoadedModels: random.NextDouble() < 0.5 ? 0 : random.Next(1, 4),
                IdleUnloadAfter: random.NextDouble() < 0.5 ? TimeSpan.Zero : Seconds(20, 120),
                MaxSwapWait: swap, EvictForeign: random.NextDouble() < 0.3, Parallel: random.Next(1, 5),
                downloaded, allowed, ForeignModel: random.NextDouble() < 0.2 ? downloaded[random.Next(downloaded.Count)] : null));
        }
        var length = Seconds(60, 240);
        // Popular models more often; a few names no host has (they must get "not found", never hang).
        var clients = Enumerable.Range(0, random.Next(2, 13)).Select(c => new SimClient(c,
            random.NextDouble() < 0.05 ? "unknown-model" : models[Math.Min(models.Count - 1, (int)(models.Count * random.NextDouble() * random.NextDouble()))].Key,
            Seconds(0, length.TotalSeconds / 3), Seconds(0, 2), Seconds(0.05, 5),
            random.NextDouble() < 0.1 ? hosts[random.Next(hosts.Count)].Name : null)).ToList();
        // Priorities from a generator of their own: the rest of each seed's workload stays what it was before keys had them.
        var priorities = new Random(seed ^ 0x5EED);
        clients = [.. clients.Select(c => c with { Priority = (LmsProxy.Keys.KeyPriority)priorities.Next(3) })];
        var faults = new List<SimFault>();
        foreach (var host in hosts)
        {
            if (random.NextDouble() < 0.25)
            {
                var down = Seconds(5, length.TotalSeconds);
                faults.Add(new(down, "down", host.Name));
                faults.Add(new(down + Seconds(2, 60), "up", host.Name));
            }
            for (var e = random.Next(0, 3); e > 0; e--) faults.Add(new(Seconds(1, length.TotalSeconds), "evict", host.Name, host.Downloaded[random.Next(host.Downloaded.Count)]));
            if (random.NextDouble() < 0.2) faults.Add(new(Seconds(1, length.TotalSeconds), "budget", host.Name, Value: (long)(host.TrueMemory * (0.5 + random.NextDouble() * 0.5))));
            if (random.NextDouble() < 0.2) faults.Add(new(Seconds(1, length.TotalSeconds), "max-loaded", host.Name, Value: random.Next(0, 3)));
        }
        var pinned = random.NextDouble() < 0.2 ? new List<string> { models[random.Next(models.Count)].Key } : [];
        return new Workload(seed, hosts, models, clients, [.. faults.OrderBy(f => f.At)], pinned, length,
            LoadFailureRate: random.NextDouble() < 0.3 ? 0.05 : 0, UnloadFailureRate: random.NextDouble() < 0.3 ? 0.05 : 0, CancelRate: random.NextDouble() < 0.5 ? 0.05 : 0);
    }
}
