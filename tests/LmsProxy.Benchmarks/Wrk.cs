using System.Globalization;
using System.Text.RegularExpressions;

namespace LmsProxy.Benchmarks;

internal sealed record WrkResult(double RequestsPerSecond, double P50Ms, double P99Ms, long Errors)
{
    /// <summary>CPU the process under load used per request (user + system), when measured.</summary>
    public double CpuMicrosecondsPerRequest { get; init; }
}

/// <summary>Runs wrk (a real load tool, from Debian) with a POST body, and reads its summary.</summary>
internal static partial class Wrk
{
    public static async Task<WrkResult> RunAsync(string url, int connections, TimeSpan duration, string body, string scriptDir)
    {
        var script = Path.Combine(scriptDir, "post.lua");
        File.WriteAllText(script, $"wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n");
        var output = await Processes.RunAsync("wrk", ["-t", Math.Min(2, connections).ToString(CultureInfo.InvariantCulture), "-c", connections.ToString(CultureInfo.InvariantCulture),
            "-d", $"{(int)duration.TotalSeconds}s", "--latency", "-s", script, url]);
        var rps = double.Parse(RequestsPerSecond().Match(output).Groups[1].Value, CultureInfo.InvariantCulture);
        var errors = Non2xx().Match(output) is { Success: true } m ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        errors += SocketErrors().Matches(output).Sum(x => long.Parse(x.Groups[1].Value, CultureInfo.InvariantCulture));
        return new WrkResult(rps, Percentile(output, "50%"), Percentile(output, "99%"), errors);
    }

    private static double Percentile(string output, string label)
    {
        var match = Regex.Match(output, $@"^\s+{Regex.Escape(label)}\s+([\d.]+)(us|ms|s)\s*$", RegexOptions.Multiline);
        var value = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        return match.Groups[2].Value switch { "us" => value / 1000, "ms" => value, _ => value * 1000 };
    }

    [GeneratedRegex(@"Requests/sec:\s+([\d.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"Non-2xx or 3xx responses:\s+(\d+)")]
    private static partial Regex Non2xx();

    [GeneratedRegex(@"(?:connect|read|write|timeout) (\d+)")]
    private static partial Regex SocketErrors();
}
