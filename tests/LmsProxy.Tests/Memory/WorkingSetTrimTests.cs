using System.IO.MemoryMappedFiles;
using LmsProxy.Hosting;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Memory;

/// <summary>
/// The trim on this very process. The framework's files are mapped by the test runner too, and the kernel leaves
/// pages that two processes map alone; so the test maps a file of its own, privately, as the runtime maps code.
/// </summary>
[Collection(nameof(MemoryMeasurement))]
public sealed class WorkingSetTrimTests(ITestOutputHelper output)
{
    private const int MiB = 1024 * 1024;

    [Fact]
    public void ATrim_GivesBackTheFilePagesOfAPrivateMappingReadOnce()
    {
        var path = Path.Combine(Path.GetTempPath(), $"lmsproxy-trim-{Guid.NewGuid():N}.bin");
        try
        {
            using (var file = new FileStream(path, FileMode.CreateNew))
            {
                var block = new byte[MiB];
                Random.Shared.NextBytes(block);
                for (var i = 0; i < 32; i++) file.Write(block);
                file.Flush(flushToDisk: true); // clean pages: the kernel pages out only what needs no writing back
            }
            using var mapped = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.CopyOnWrite);
            using var view = mapped.CreateViewAccessor(0, 32 * MiB, MemoryMappedFileAccess.CopyOnWrite);
            var before = ResidentFileKiB();
            long sum = 0;
            for (long offset = 0; offset < 32 * MiB; offset += 4096) sum += view.ReadByte(offset);
            var touched = ResidentFileKiB();

            var result = WorkingSetTrimmer.Trim();

            var after = ResidentFileKiB();
            output.WriteLine($"file pages {before / 1024} -> {touched / 1024} after reading 32 MiB -> {after / 1024} MiB after the trim; VmRSS {result?.BeforeMiB} -> {result?.AfterMiB} MiB ({sum})");
            Assert.True(touched - before >= 30 * 1024, "reading the mapping made its pages resident");
            Assert.NotNull(result);
            Assert.True(touched - after >= 30 * 1024, $"file pages {touched / 1024} -> {after / 1024} MiB");
            Assert.True(result.Value.BeforeMiB - result.Value.AfterMiB >= 30);
            // The pages are still there for the program: read again, the same bytes.
            long again = 0;
            for (long offset = 0; offset < 32 * MiB; offset += 4096) again += view.ReadByte(offset);
            Assert.Equal(sum, again);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static long ResidentFileKiB() => WorkingSetTrimmer.StatusKiB("RssFile");
}
