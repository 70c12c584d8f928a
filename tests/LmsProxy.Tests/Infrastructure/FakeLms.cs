namespace LmsProxy.Tests.Infrastructure;

/// <summary>
/// A private copy of tests/LmStudioSimulator/fake-lms/lms in a temp folder: it records each call in calls.log and
/// asks the simulator what lms would do; fake-lms.env switches misbehaviour on (hang, fail, garbage, delay).
/// </summary>
public sealed class FakeLms : IDisposable
{
    private readonly Uri _simulator;

    public FakeLms(Uri simulator, string misbehaviour = "")
    {
        _simulator = simulator;
        Directory.CreateDirectory(Dir);
        File.Copy(System.IO.Path.Combine(AppContext.BaseDirectory, "fake-lms", "lms"), Path, overwrite: true);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Misbehave(misbehaviour);
    }

    public string Dir { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "fake-lms-" + Guid.NewGuid().ToString("N"));

    public string Path => System.IO.Path.Combine(Dir, "lms");

    /// <summary>For example "HANG_ON=load" or "FAIL_ON=load"; empty for a well-behaved lms.</summary>
    public void Misbehave(string settings) =>
        File.WriteAllText(System.IO.Path.Combine(Dir, "fake-lms.env"), $"SIM_URL={_simulator.GetLeftPart(UriPartial.Authority)}\n{settings}\n");

    public IReadOnlyList<string> Calls
    {
        get
        {
            var log = System.IO.Path.Combine(Dir, "calls.log");
            return File.Exists(log) ? File.ReadAllLines(log) : [];
        }
    }

    public int CallsOf(string subcommand) => Calls.Count(c => c.Split(' ')[0] == subcommand);

    /// <summary>The pid of the sleep a hanging lms left running, if any.</summary>
    public int? HungPid
    {
        get
        {
            var file = System.IO.Path.Combine(Dir, "hung.pid");
            return File.Exists(file) && int.TryParse(File.ReadAllText(file).Trim(), out var pid) ? pid : null;
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}
