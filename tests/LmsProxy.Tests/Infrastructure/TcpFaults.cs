using System.Net;
using System.Net.Sockets;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>An LM Studio that accepts connections and reads requests but never answers one (a wedged server).</summary>
public sealed class SilentServer : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _accepted = [];

    public SilentServer()
    {
        _listener.Start();
        _ = AcceptAsync();
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");

    private async Task AcceptAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                lock (_accepted) _accepted.Add(client);
                _ = DrainAsync(client);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task DrainAsync(TcpClient client)
    {
        var buffer = new byte[4096];
        try
        {
            while (await client.GetStream().ReadAsync(buffer, _stop.Token) > 0)
            {
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        lock (_accepted) foreach (var client in _accepted) client.Dispose();
    }
}

/// <summary>
/// A TCP relay in front of a real server that can turn into a black hole, like a machine whose cable was pulled:
/// open connections are dropped and new ones never complete (the listener stops accepting and its backlog is full, so
/// the kernel drops further connection attempts: the client sees its connect time-out, not a refusal).
/// </summary>
public sealed class BlackHoleRelay : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Uri _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _open = [];
    private readonly List<TcpClient> _fillers = [];
    private volatile bool _blackHole;

    public BlackHoleRelay(Uri target)
    {
        _target = target;
        _listener.Start(backlog: 1);
        _ = AcceptAsync();
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");

    /// <summary>From now on nothing gets through, and connecting times out.</summary>
    public async Task BecomeBlackHoleAsync()
    {
        _blackHole = true;
        lock (_open)
        {
            foreach (var c in _open) c.Dispose();
            _open.Clear();
        }
        // Fill the accept queue with connections nobody accepts: later SYNs are dropped.
        var port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        for (var i = 0; i < 4; i++)
        {
            var filler = new TcpClient();
            using var quick = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await filler.ConnectAsync(IPAddress.Loopback, port, quick.Token);
            }
            catch (OperationCanceledException)
            {
                // The queue is full already.
            }
            _fillers.Add(filler);
        }
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                if (_blackHole)
                {
                    client.Dispose();
                    return; // stop accepting: the backlog fills and connection attempts hang
                }
                _ = RelayAsync(client);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using var upstream = new TcpClient();
        try
        {
            await upstream.ConnectAsync(_target.Host, _target.Port, _stop.Token);
            lock (_open)
            {
                _open.Add(client);
                _open.Add(upstream);
            }
            var a = client.GetStream().CopyToAsync(upstream.GetStream(), _stop.Token);
            var b = upstream.GetStream().CopyToAsync(client.GetStream(), _stop.Token);
            await Task.WhenAny(a, b);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            client.Dispose();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        lock (_open) foreach (var c in _open) c.Dispose();
        foreach (var f in _fillers) f.Dispose();
    }
}
