using System.Globalization;
using System.Runtime.InteropServices;

namespace LmsProxy.Hosting;

/// <summary>
/// Gives back to the system the pages of code that only start-up and warm-up used (Linux): the configuration binding,
/// dependency injection, Kestrel's and the store's start, and, once tiered compilation has settled under load, most of
/// the JIT itself. Those pages are file pages (the framework's precompiled code, native libraries, a native build's
/// own executable) that stay resident for good once touched: 16-21 MiB of a JIT build's 80-110. The trim asks the
/// kernel to page out this process's private file mappings (madvise MADV_PAGEOUT, Linux 5.4): the kernel skips pages
/// another process also maps and dirty ones, so nothing changes for the program but a page fault where a page is
/// needed again. It runs when the JIT has been quiet for a period, once after start-up and again after each burst of
/// compilation; under steady load it does not trim again. <c>LMSPROXY_LOW_MEMORY=0</c> turns it off with the runtime settings.
/// </summary>
internal sealed partial class WorkingSetTrimmer(ILogger<WorkingSetTrimmer> logger) : BackgroundService
{
    /// <summary>How often the JIT's count of compiled methods is read; a period with fewer new ones is quiet.</summary>
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(5);

    private const long QuietMethods = 100;

    /// <summary>New methods compiled since the last trim that make the next quiet period trim again (a burst of warm-up).</summary>
    private const long BurstMethods = 500;

    private const int MadvPageout = 21;

    /// <summary>On Linux, for this program's own process, unless opted out.</summary>
    public static bool Enabled => OperatingSystem.IsLinux() && LowMemoryRuntime.WantedForThisProcess;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period);
        long last = System.Runtime.JitInfo.GetCompiledMethodCount(), trimmedAt = -1;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                // A native build compiles nothing: its first period is quiet, and it trims once.
                var count = System.Runtime.JitInfo.GetCompiledMethodCount();
                var quiet = count - last < QuietMethods;
                last = count;
                if (!quiet || (trimmedAt >= 0 && count - trimmedAt < BurstMethods)) continue;
                trimmedAt = count;
                if (Trim() is not { } result)
                {
                    LogUnsupported(logger);
                    return;
                }
                LogTrimmed(logger, result.BeforeMiB, result.AfterMiB);
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>Pages out this process's private file mappings; the resident memory before and after, or null where the kernel cannot.</summary>
    public static (long BeforeMiB, long AfterMiB)? Trim()
    {
        // An empty range: the kernel checks the advice (EINVAL before Linux 5.4) and does nothing else.
        if (Madvise(0, 0, MadvPageout) != 0) return null;
        var before = ResidentMiB();
        foreach (var (start, length) in PrivateFileMappings(File.ReadLines("/proc/self/maps")))
        {
            // A range unmapped meanwhile, or one the kernel will not page out (locked), is left as it is.
            Madvise(start, length, MadvPageout);
        }
        return (before, ResidentMiB());
    }

    /// <summary>
    /// The ranges of /proc/self/maps lines that map a file privately ("r-xp ... /usr/share/dotnet/...libcoreclr.so"):
    /// not anonymous memory, not the kernel's pseudo-mappings ([vdso], [stack]), not a shared mapping (SQLite's
    /// WAL index, whose dirty pages would be written back), not memfd double mappings or deleted files.
    /// </summary>
    public static IEnumerable<(nint Start, nint Length)> PrivateFileMappings(IEnumerable<string> mapsLines)
    {
        foreach (var line in mapsLines)
        {
            // address perms offset dev inode path
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6 || fields[1].Length != 4 || fields[1][3] != 'p') continue;
            var path = fields[5].Trim();
            if (!path.StartsWith('/') || path.StartsWith("/memfd:", StringComparison.Ordinal) || path.EndsWith("(deleted)", StringComparison.Ordinal)) continue;
            var dash = fields[0].IndexOf('-');
            if (dash <= 0
                || !long.TryParse(fields[0].AsSpan(0, dash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var start)
                || !long.TryParse(fields[0].AsSpan(dash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var end)
                || end <= start) continue;
            yield return ((nint)start, (nint)(end - start));
        }
    }

    private static long ResidentMiB() => StatusKiB("VmRSS") / 1024;

    /// <summary>A field of /proc/self/status in KiB ("VmRSS:\t   79324 kB"), 0 if absent.</summary>
    public static long StatusKiB(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal) && line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries) is [var name, var value, ..]
                && name.Length == field.Length + 1 && long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var kib)) return kib;
        }
        return 0;
    }

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nint length, int advice);

    [LoggerMessage(EventId = 90, Level = LogLevel.Information, Message = "Resident memory {Before} -> {After} MiB: the pages only start-up and warm-up used are given back")]
    private static partial void LogTrimmed(ILogger logger, long before, long after);

    [LoggerMessage(EventId = 91, Level = LogLevel.Debug, Message = "This kernel cannot page out on request (madvise MADV_PAGEOUT needs Linux 5.4): start-up pages stay resident")]
    private static partial void LogUnsupported(ILogger logger);
}
