using System.Net;
using System.Net.Sockets;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>Waiting for something that happens in the background, with a deadline that fails the test.</summary>
public static class Eventually
{
    public static Task Until(Func<bool> condition, TimeSpan? within = null) => Until(() => Task.FromResult(condition()), within);

    public static async Task Until(Func<Task<bool>> condition, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(10));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the condition was not met in time");
            await Task.Delay(20);
        }
    }

    /// <summary>A loopback port nothing listens on.</summary>
    public static int UnusedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
