using LmsProxy.Loading;

namespace LmsProxy.Tests.Units;

/// <summary>lms load's spinner read from a pipe that cuts its frames anywhere: only whole percentages count.</summary>
public sealed class SpinnerProgressTests
{
    private static List<double> Feed(params string[] chunks)
    {
        var seen = new List<double>();
        var spinner = new SpinnerProgress(seen.Add);
        foreach (var chunk in chunks) spinner.Feed(chunk);
        return seen;
    }

    [Fact]
    public void FrameCutInsideItsPercentage_IsNotReadAsALowerOne()
    {
        var seen = Feed("\u001b[?25l\rLoading qwen/qwen3-8b 36% ⠋\rLoading qwen/qwen3-8b 3", "7% ⠙", "\rLoading qwen/qwen3-8b 38% ⠹");

        Assert.Equal([0.36, 0.37, 0.38], seen);
    }

    [Fact]
    public void PercentageWithoutItsGlyphYet_WaitsForTheRestOfTheFrame()
    {
        var seen = Feed("\rLoading qwen/qwen3-8b 4", "5% ", "⠸");

        Assert.Equal([0.45], seen);
    }

    [Fact]
    public void ModelNamesWithDigits_AndTheClosingSequence_AreNoProgress()
    {
        var seen = Feed("\rLoading qwen/qwen3-8b-q4 ⠋", "\r\u001b[K\u001b[?25h");

        Assert.Empty(seen);
    }
}
