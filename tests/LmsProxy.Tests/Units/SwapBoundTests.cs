using LmsProxy.Scheduling.Policy;

namespace LmsProxy.Tests.Units;

/// <summary>MaxSwapWait auto: 1.15 × the swap's two loads, between 2 and 30 s; a fixed value is used as it is.</summary>
public sealed class SwapBoundTests
{
    private static HostLimits Limits(TimeSpan? maxSwapWait) => new(1, TimeSpan.Zero, maxSwapWait, false, 0);

    private static TimeSpan Seconds(double s) => TimeSpan.FromSeconds(s);

    [Fact]
    public void Auto_IsAMultipleOfTheLoadInAndTheLongestLoadBack()
    {
        Assert.Equal(Seconds(3.45), SwapBound.For(Limits(null), Seconds(1.5), [Seconds(1.5)]));
        Assert.Equal(Seconds(1.15 * (2 + 6)), SwapBound.For(Limits(null), Seconds(2), [Seconds(1), Seconds(6), null]));
    }

    [Fact]
    public void Auto_AnUnmeasuredModel_IsTakenToLoadLikeTheOneItDisplaces_AndWithNeitherMeasured5s()
    {
        Assert.Equal(Seconds(1.15 * 4), SwapBound.For(Limits(null), null, [Seconds(2)]));
        Assert.Equal(Seconds(1.15 * 10), SwapBound.For(Limits(null), null, [null]));
    }

    [Fact]
    public void Auto_StaysBetweenTheFloorAndTheCeiling_AndAFixedBoundIsKept()
    {
        Assert.Equal(SwapBound.Floor, SwapBound.For(Limits(null), Seconds(0.2), [Seconds(0.3)]));
        Assert.Equal(SwapBound.Ceiling, SwapBound.For(Limits(null), Seconds(40), [Seconds(40)]));
        Assert.Equal(TimeSpan.Zero, SwapBound.For(Limits(TimeSpan.Zero), Seconds(1.5), [Seconds(1.5)]));
        Assert.Equal(Seconds(20), SwapBound.For(Limits(Seconds(20)), Seconds(1.5), [Seconds(1.5)]));
    }
}
