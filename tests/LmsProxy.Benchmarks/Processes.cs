using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LmsProxy.Benchmarks;

/// <summary>Starts LmsProxy on a port in front of an upstream, with extra settings (environment variables such as LmsProxy__Loader).</summary>
internal delegate Process StartProxy(int port, string upstream, IReadOnlyDictionary<string, string>? settings = null);

/// <summary>Child processes of the benchmark (nginx, LmsProxy), killed when the benchmark ends.</summary>
internal sealed class Processes : IDisposable
{
    private readonly List<Process> _started = [];

    public Process Start(string file, IEnumerable<string> args, IDictionary<string, string>? env = null, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory ?? "" };
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) info.Environment[k] = v;
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is { Length: > 0 } line && line.Contains("emerg", StringComparison.Ordinal)) Console.Error.WriteLine(line); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _started.Add(process);
        return process;
    }

    public static async Task<string> RunAsync(string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed: {await error}");
        return await output;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static async Task WaitForHttp(string url)
    {
        using var http = new HttpClient();
        for (var i = 0; i < 200; i++)
        {
            try
            {
                using var response = await http.GetAsync(url);
                return;
            }
            catch (HttpRequestException)
            {
                await Task.Delay(50);
            }
        }
        throw new TimeoutException($"{url} did not answer");
    }

    /// <summary>Resident memory of a process, in MiB (Linux).</summary>
    public static double RssMiB(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024;
    }

    /// <summary>User and system CPU time a process has used so far, in microseconds (Linux, 100 ticks a second).</summary>
    public static double CpuMicroseconds(int pid)
    {
        // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th of them.
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture)) * 10_000.0;
    }

    public void Dispose()
    {
        foreach (var process in _started)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            process.Dispose();
        }
    }
}
