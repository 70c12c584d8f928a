using LmsProxy.Hosting;

namespace LmsProxy.Tests.Units;

public sealed class WorkingSetTrimmerTests
{
    [Fact]
    public void OnlyPrivateFileMappingsAreTrimmed()
    {
        string[] maps =
        [
            "7fe12fc80000-7fe12fcb0000 r-xp 00002000 fd:01 1048611    /usr/share/dotnet/shared/Microsoft.NETCore.App/10.0.12/libcoreclr.so",
            "7fe130000000-7fe130001000 rw-p 00000000 00:00 0 ",
            "7fe131000000-7fe131002000 rw-s 00000000 fd:01 2000       /var/lib/lmsproxy/lmsproxy.db-shm",
            "7fe132000000-7fe132004000 r-xs 00000000 00:01 3000       /memfd:doublemapper (deleted)",
            "7fe133000000-7fe133001000 r--p 00000000 fd:01 4000       /tmp/gone.dll (deleted)",
            "7ffd1a000000-7ffd1a021000 rw-p 00000000 00:00 0          [stack]",
            "7ffd1a100000-7ffd1a102000 r-xp 00000000 00:00 0          [vdso]",
            "55753a000000-55753a010000 r--p 00000000 fd:01 5000       /usr/share/dotnet/dotnet",
            "not a line",
        ];

        var ranges = WorkingSetTrimmer.PrivateFileMappings(maps).ToList();

        Assert.Equal([(0x7fe12fc80000L, 0x30000L), (0x55753a000000L, 0x10000L)], ranges.Select(r => ((long)r.Start, (long)r.Length)));
    }
}
