namespace LmsProxy.Hosting;

/// <summary>
/// Three runtime settings that cut resident memory under load: a 1 MiB first GC generation (the default budget follows
/// the CPU's cache size, tens of MiB) and no W^X double mapping of JIT code, together about 15% at no measured cost in
/// throughput; and a JIT that gives its scratch memory back (by default the runtime keeps up to 16 MiB of the JIT's
/// freed 64 KiB slabs for the next compilation: 119-123 against 106-108 MiB at 64 connections; it only costs the JIT
/// an allocation per slab while tiering recompiles hot code).
/// The JIT runtime reads them only from the environment, before Main: runtimeconfig.json's
/// "System.GC.Gen0Size" or "GCgen0size" reach AppContext but the GC ignores them (tried: 2 gen0 collections for
/// 200 MB allocated with either, 195 with the environment variable). So the service files set them, the image sets
/// them, and <see cref="Apply"/> sets them for every other way of starting: on Linux it re-executes the same
/// command line with them set, before anything else has started (same process id, so systemd and shells see one process).
/// </summary>
internal static partial class LowMemoryRuntime
{
    public static readonly KeyValuePair<string, string>[] Settings =
    [
        new("DOTNET_GCgen0size", "0x100000"),
        new("DOTNET_EnableWriteXorExecute", "0"),
        new("DOTNET_JitHostMaxSlabCache", "0x10000"),
    ];

    /// <summary>Set to 0 to keep the runtime's defaults (no re-execution, no <see cref="WorkingSetTrimmer"/>).</summary>
    public const string OptOut = "LMSPROXY_LOW_MEMORY";

    /// <summary>The value <see cref="OptOut"/> has in the re-executed process: not an opt-out, only a mark.</summary>
    private const string Reexecuted = "reexecuted";

    /// <summary>
    /// Not opted out, and this program is the process: tests run Main inside their own test host, which must stay as
    /// it is (the re-execution and <see cref="WorkingSetTrimmer"/> both ask).
    /// </summary>
    public static bool WantedForThisProcess =>
        Environment.GetEnvironmentVariable(OptOut) != "0" && System.Reflection.Assembly.GetEntryAssembly() == typeof(LowMemoryRuntime).Assembly;

    /// <summary>Re-executes this process with <see cref="Settings"/> when the JIT runtime lacks them; returns when it does not.</summary>
    public static void Apply()
    {
        // Native AOT has no JIT code to double-map, and reads its GC settings from the binary (see the project file).
        if (!System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported || !OperatingSystem.IsLinux()) return;
        if (!WantedForThisProcess || Environment.GetEnvironmentVariable(OptOut) == Reexecuted) return;
        if (Settings.All(s => Environment.GetEnvironmentVariable(s.Key) is not null)) return;
        // The exact argv this process was started with (the dotnet host's own arguments included), NUL-separated.
        string[] argv;
        try { argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0'); }
        catch (IOException) { return; }
        if (argv.Length == 0 || Environment.ProcessPath is not { } executable) return;
        foreach (var (name, value) in Settings)
        {
            if (Environment.GetEnvironmentVariable(name) is null) Environment.SetEnvironmentVariable(name, value);
        }
        // Marks the second start, so that a runtime that refuses a setting cannot make it re-execute for ever.
        Environment.SetEnvironmentVariable(OptOut, Reexecuted);
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>().Select(e => $"{e.Key}={e.Value}").ToArray();
        Execve(executable, [.. argv, null], [.. environment, null]);
        // Only reached when execve failed: carry on with the runtime's defaults.
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "execve", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int Execve(string path, string?[] argv, string?[] envp);
}
