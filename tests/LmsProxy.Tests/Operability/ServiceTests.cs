using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Xml.Linq;
using LmsProxy.Service;
using LmsProxy.Tests.Infrastructure;
using Xunit.Abstractions;

namespace LmsProxy.Tests.Operability;

/// <summary>
/// `lmsproxy service ...`: the systemd unit `--print` shows is what systemd accepts, the program tells a systemd
/// stand-in it is ready over NOTIFY_SOCKET once it serves, and the launchd agent and sc.exe command lines say what
/// they must. The program is the real one (`dotnet LmsProxy.dll`), run as a child process.
/// </summary>
public sealed class ServiceTests(ITestOutputHelper output)
{
    private static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "LmsProxy.dll");
    private const string SystemdAnalyze = "/usr/bin/systemd-analyze";

    [Theory(Timeout = 120000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task InstallPrint_WritesNothing_AndItsUnitPassesSystemdAnalyzeVerify(bool userUnit)
    {
        var temp = Directory.CreateTempSubdirectory("lmsproxy-unit-");
        try
        {
            var home = Directory.CreateDirectory(Path.Combine(temp.FullName, "home")).FullName;
            var settings = Path.Combine(temp.FullName, "my settings", "appsettings.json");
            string[] args = userUnit ? ["service", "install", "--print", "--user", "--settings", settings, "--", "--urls", "http://0.0.0.0:8080"] : ["service", "install", "--print"];
            // HOME and XDG_CONFIG_HOME in a temp folder: a --print that wrote anyway would write there, and be seen.
            var printed = await Run(args, ("HOME", home), ("XDG_CONFIG_HOME", Path.Combine(home, ".config")));
            Assert.True(printed.ExitCode == 0, printed.Stderr);
            Assert.Empty(Directory.EnumerateFileSystemEntries(home));
            Assert.False(File.Exists(settings));
            Assert.Contains(userUnit ? $"would write {Path.Combine(home, ".config", "systemd", "user", "lmsproxy.service")}" : "would write /etc/systemd/system/lmsproxy.service", printed.Stderr, StringComparison.Ordinal);
            // No LM Studio folder in this home: the warning that the service would not find lms's server and key.
            if (userUnit) Assert.Contains("does not seem to run LM Studio", printed.Stderr, StringComparison.Ordinal);

            var unit = printed.Stdout;
            Assert.Contains("\nType=notify\n", unit, StringComparison.Ordinal);
            Assert.Contains("\nRestart=on-failure\n", unit, StringComparison.Ordinal);
            Assert.Contains("\nEnvironment=\"DOTNET_GCgen0size=0x100000\"\n", unit, StringComparison.Ordinal);
            Assert.Contains("\nEnvironment=\"DOTNET_EnableWriteXorExecute=0\"\n", unit, StringComparison.Ordinal);
            Assert.Contains("\nEnvironment=\"DOTNET_JitHostMaxSlabCache=0x10000\"\n", unit, StringComparison.Ordinal);
            Assert.Contains($"ExecStart=\"{Environment.ProcessPath}\" \"{Dll}\"", unit.Replace("$$", "$", StringComparison.Ordinal), StringComparison.Ordinal);
            if (userUnit)
            {
                Assert.Contains($"\"--settings\" \"{settings}\" \"--urls\" \"http://0.0.0.0:8080\"\n", unit, StringComparison.Ordinal);
                Assert.DoesNotContain("\nUser=", unit, StringComparison.Ordinal);
                Assert.Contains("\nWantedBy=default.target\n", unit, StringComparison.Ordinal);
            }
            else
            {
                Assert.Contains($"\nUser={Environment.GetEnvironmentVariable("SUDO_USER") ?? Environment.UserName}\n", unit, StringComparison.Ordinal);
                Assert.Contains("\nWantedBy=multi-user.target\n", unit, StringComparison.Ordinal);
            }

            if (!File.Exists(SystemdAnalyze))
            {
                // .ci/run installs Debian's systemd; on a developer machine without it the verification cannot run.
                Assert.True(Environment.GetEnvironmentVariable("CI") is null, $"{SystemdAnalyze} is missing in CI");
                output.WriteLine($"not verified: {SystemdAnalyze} not installed (apt-get install systemd)");
                return;
            }
            var unitDir = Directory.CreateDirectory(Path.Combine(temp.FullName, "unit")).FullName;
            var unitFile = Path.Combine(unitDir, "lmsproxy.service");
            File.WriteAllText(unitFile, unit);
            var runtimeDir = Directory.CreateDirectory(Path.Combine(temp.FullName, "runtime")).FullName; // a user manager's
            var verify = await Start(SystemdAnalyze, userUnit ? ["--user", "verify", unitFile] : ["verify", unitFile], ("XDG_RUNTIME_DIR", runtimeDir));
            // verify exits 0 with warnings too (an unknown key is only "ignoring"): none may be printed.
            Assert.True(verify.ExitCode == 0 && verify.Stderr.Trim().Length == 0 && verify.Stdout.Trim().Length == 0,
                $"systemd-analyze verify ({verify.ExitCode}): {verify.Stdout} {verify.Stderr}\n{unit}");
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    [Fact(Timeout = 120000)]
    public async Task UnderSystemd_ReadyIsAnnouncedOverNotifySocketOnceItServes_AndStoppingOnTerm()
    {
        var temp = Directory.CreateTempSubdirectory("lmsproxy-notify-");
        Process? shell = null;
        try
        {
            // systemd's side: a datagram socket whose path the service finds in NOTIFY_SOCKET.
            var socketPath = Path.Combine(temp.FullName, "notify");
            using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            notify.Bind(new UnixDomainSocketEndPoint(socketPath));
            // The program counts as a systemd service when its parent process is named systemd: a shell named so.
            var systemd = Path.Combine(temp.FullName, "systemd");
            File.Copy("/bin/bash", systemd);
            var port = Eventually.UnusedPort();
            var start = new ProcessStartInfo(systemd, ["-c", "\"$0\" \"$1\" --urls \"$2\" --LmsProxy:Upstream=\"$3\"; exit $?",
                Environment.ProcessPath!, Dll, $"http://127.0.0.1:{port}", $"http://127.0.0.1:{Eventually.UnusedPort()}"])
            { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = temp.FullName };
            start.Environment["NOTIFY_SOCKET"] = socketPath;
            shell = Process.Start(start)!;
            var logs = shell.StandardOutput.ReadToEndAsync();
            _ = shell.StandardError.ReadToEndAsync();

            Assert.Equal("READY=1", await Receive(notify, TimeSpan.FromSeconds(60)));
            // Ready means serving: the first request after the announcement is answered, with no retry.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{port}/healthz")).StatusCode);

            // systemctl stop sends SIGTERM to the service's process (the shell's child): STOPPING=1, then it exits.
            var program = int.Parse(File.ReadAllText($"/proc/{shell.Id}/task/{shell.Id}/children").Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(0, (await Start("kill", ["-TERM", program.ToString(System.Globalization.CultureInfo.InvariantCulture)])).ExitCode);
            Assert.Equal("STOPPING=1", await Receive(notify, TimeSpan.FromSeconds(30)));
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await shell.WaitForExitAsync(exited.Token);
            Assert.Equal(0, shell.ExitCode);
            output.WriteLine(await logs);
        }
        finally
        {
            if (shell is { HasExited: false }) shell.Kill(entireProcessTree: true);
            shell?.Dispose();
            temp.Delete(recursive: true);
        }
    }

    [Fact(Timeout = 60000)]
    public async Task Help_SaysTheServiceRunsAsTheUserWhoRunsLmStudio()
    {
        var help = await Run(["--help"]);
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("lmsproxy service install [--user] [--settings <file>] [--print]", help.Stdout, StringComparison.Ordinal);
        Assert.Contains("must be the user who runs LM Studio", help.Stdout, StringComparison.Ordinal);
        var wrong = await Run(["service", "start"]);
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains("say install, uninstall or status", wrong.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TheNativeTool_IsStartedThroughItsCommandLink_WhichAnUpdateRepoints_NotItsVersionedStoreFolder()
    {
        if (OperatingSystem.IsWindows()) return; // the native tool package is linux-x64 only
        var tools = Directory.CreateTempSubdirectory("lmsproxy-tools-");
        try
        {
            // The layout `dotnet tool install` makes for the linux-x64 package: the command is a link into .store.
            var folder = Directory.CreateDirectory(Path.Combine(tools.FullName, ".store", "lmsproxy", "0.2.0", "lmsproxy.linux-x64", "0.2.0", "tools", "any", "linux-x64")).FullName;
            var executable = Path.Combine(folder, "LmsProxy");
            File.WriteAllText(executable, "");
            File.WriteAllText(Path.Combine(folder, "DotnetToolSettings.xml"), "<DotNetCliTool />");
            var command = Path.Combine(tools.FullName, "lmsproxy");
            File.CreateSymbolicLink(command, Path.GetRelativePath(tools.FullName, executable));

            Assert.Equal(command, ServiceDefinition.ToolCommandFor(executable));
            // A link to another version (the one this program is not) is left alone, and so is a program outside a tool.
            File.Delete(command);
            File.CreateSymbolicLink(command, "/nowhere/LmsProxy");
            Assert.Equal(executable, ServiceDefinition.ToolCommandFor(executable));
            Assert.Equal("/opt/lmsproxy/LmsProxy", ServiceDefinition.ToolCommandFor("/opt/lmsproxy/LmsProxy"));
        }
        finally
        {
            tools.Delete(recursive: true);
        }
    }

    [Fact]
    public void LaunchdAgent_RunsTheProgramAtLoad_RestartsItOnFailure_WithTheMemorySettingsAndALogFile()
    {
        var service = new ServiceDefinition("/Users/ann/.dotnet/tools/lmsproxy", ["--settings", "/Users/ann/LmsProxy & co/appsettings.json"],
            "/Users/ann/.dotnet/tools", [new("DOTNET_GCgen0size", "0x100000"), new("DOTNET_EnableWriteXorExecute", "0")], "ann", "/Users/ann");
        var plist = LaunchdAgent.Render(service);
        using var reader = System.Xml.XmlReader.Create(new StringReader(plist), new System.Xml.XmlReaderSettings { DtdProcessing = System.Xml.DtdProcessing.Ignore });
        var dict = XDocument.Load(reader).Root!.Element("dict")!;
        var values = dict.Elements("key").ToDictionary(k => k.Value, k => k.ElementsAfterSelf().First());

        Assert.Equal("com.lmsproxy", values["Label"].Value);
        Assert.Equal(["/Users/ann/.dotnet/tools/lmsproxy", "--settings", "/Users/ann/LmsProxy & co/appsettings.json"], values["ProgramArguments"].Elements("string").Select(e => e.Value));
        Assert.Equal("true", values["RunAtLoad"].Name.LocalName);
        var keepAlive = values["KeepAlive"].Elements("key").ToDictionary(k => k.Value, k => (k.ElementsAfterSelf().First()).Name.LocalName);
        Assert.Equal("false", keepAlive["SuccessfulExit"]); // restarted when it fails, not after a clean stop
        var environment = values["EnvironmentVariables"].Elements("key").ToDictionary(k => k.Value, k => (k.ElementsAfterSelf().First()).Value);
        Assert.Equal("0x100000", environment["DOTNET_GCgen0size"]);
        Assert.Equal("0", environment["DOTNET_EnableWriteXorExecute"]);
        Assert.Equal("/Users/ann/Library/Logs/LmsProxy.log", values["StandardErrorPath"].Value);
        Assert.Equal("/Users/ann/Library/LaunchAgents/com.lmsproxy.plist", LaunchdAgent.PathFor("/Users/ann"));
        Assert.Equal(["launchctl", "bootstrap", "gui/501", "/Users/ann/Library/LaunchAgents/com.lmsproxy.plist"], LaunchdAgent.InstallCommands(501, LaunchdAgent.PathFor("/Users/ann"))[^1]);
    }

    [Fact]
    public void WindowsService_CreatedWithScExeUnderTheUsersAccount_StartedAutomatically_RestartedOnFailure()
    {
        var service = new ServiceDefinition(@"C:\Program Files\LmsProxy\lmsproxy.exe", ["--settings", @"C:\Users\Ann Lee\lmsproxy\appsettings.json"],
            @"C:\Program Files\LmsProxy", [new("DOTNET_GCgen0size", "0x100000"), new("DOTNET_EnableWriteXorExecute", "0")], "ann", @"C:\Users\Ann Lee");
        var commands = WindowsServiceCommands.InstallCommands(service, "s3cret").Select(WindowsServiceCommands.Display).ToList();

        Assert.Equal("""
            sc.exe create LmsProxy binPath= "\"C:\Program Files\LmsProxy\lmsproxy.exe\" --settings \"C:\Users\Ann Lee\lmsproxy\appsettings.json\"" start= delayed-auto DisplayName= LmsProxy obj= .\ann password= s3cret
            """, commands[0]);
        Assert.Equal("sc.exe failure LmsProxy reset= 86400 actions= restart/5000/restart/5000/restart/60000", commands[2]);
        Assert.Equal("""
            reg.exe add HKLM\SYSTEM\CurrentControlSet\Services\LmsProxy /v Environment /t REG_MULTI_SZ /d DOTNET_GCgen0size=0x100000\0DOTNET_EnableWriteXorExecute=0 /f
            """, commands[3]);
        Assert.Equal("sc.exe start LmsProxy", commands[^1]);
        Assert.Equal(@"DOMAIN\ann", WindowsServiceCommands.Account(@"DOMAIN\ann"));
        Assert.Equal(["sc.exe", "delete", "LmsProxy"], WindowsServiceCommands.UninstallCommands()[^1]);
    }

    [Fact(Timeout = 120000)]
    public async Task SettingsOption_FileIsRead_TheEnvironmentStillWins_AMissingFileStopsWithOneLine()
    {
        var temp = Directory.CreateTempSubdirectory("lmsproxy-settings-");
        try
        {
            var settings = Path.Combine(temp.FullName, "appsettings.json");
            File.WriteAllText(settings, """{ "LmsProxy": { "HoldTimeout": "-00:00:01" } }""");
            var rejected = await Run(["--settings", settings]);
            Assert.Equal(2, rejected.ExitCode);
            Assert.Contains("LmsProxy:HoldTimeout", rejected.Stderr, StringComparison.Ordinal);

            var missing = await Run(["--settings", Path.Combine(temp.FullName, "nope.json")]);
            Assert.Equal(2, missing.ExitCode);
            Assert.Equal($"LmsProxy cannot start: the settings file {Path.Combine(temp.FullName, "nope.json")} does not exist.", missing.Stderr.Trim());

            // The environment over the file: the same file, a valid value from the environment, and it serves.
            var port = Eventually.UnusedPort();
            var start = new ProcessStartInfo(Environment.ProcessPath!, [Dll, "--settings", settings, "--urls", $"http://127.0.0.1:{port}"])
            { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = temp.FullName };
            start.Environment["LmsProxy__HoldTimeout"] = "00:01:00";
            start.Environment["LmsProxy__Upstream"] = $"http://127.0.0.1:{Eventually.UnusedPort()}";
            using var process = Process.Start(start)!;
            _ = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            try
            {
                using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
                await Eventually.Until(async () =>
                {
                    try { return (await http.GetAsync($"http://127.0.0.1:{port}/healthz")).StatusCode == HttpStatusCode.OK; }
                    catch (HttpRequestException) { return false; }
                }, TimeSpan.FromSeconds(60));
                // Started without the low-memory settings, it runs with them: the same process, re-executed once.
                var environ = File.ReadAllText($"/proc/{process.Id}/environ").Split('\0');
                Assert.Contains("DOTNET_GCgen0size=0x100000", environ);
                Assert.Contains("DOTNET_EnableWriteXorExecute=0", environ);
                Assert.Contains("DOTNET_JitHostMaxSlabCache=0x10000", environ);
            }
            finally
            {
                process.Kill(entireProcessTree: true);
            }
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    private static async Task<string> Receive(Socket socket, TimeSpan within)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(within);
        var received = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return Encoding.UTF8.GetString(buffer, 0, received).Trim();
    }

    private static Task<(int ExitCode, string Stdout, string Stderr)> Run(string[] args, params (string Name, string Value)[] environment) =>
        Start(Environment.ProcessPath!, [Dll, .. args], environment);

    private static async Task<(int ExitCode, string Stdout, string Stderr)> Start(string fileName, string[] args, params (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(fileName, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try { await process.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"`{fileName} {string.Join(' ', args)}` did not finish within 90 s");
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}
