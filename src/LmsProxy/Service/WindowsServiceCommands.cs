namespace LmsProxy.Service;

/// <summary>
/// Windows: a service (Microsoft.Extensions.Hosting.WindowsServices tells the service manager when it runs) created with
/// sc.exe under the account of the user who runs LM Studio (so it needs that account's password), started automatically
/// (delayed, after the network), restarted on failure, with the low-memory runtime settings in the service's own
/// environment (the registry value Environment, which the service manager passes to the process).
/// </summary>
internal static class WindowsServiceCommands
{
    public const string ServiceName = "LmsProxy";
    public const string PasswordPlaceholder = "<password>";

    /// <summary>sc.exe's binPath: the command line, each part quoted as Windows parses it.</summary>
    public static string BinPath(ServiceDefinition service) => string.Join(' ', service.CommandLine.Select(Quote));

    /// <summary>The account in sc.exe's form: a local user as .\name, a domain user as given (DOMAIN\name).</summary>
    public static string Account(string userName) => userName.Contains('\\', StringComparison.Ordinal) ? userName : @".\" + userName;

    public static string[][] InstallCommands(ServiceDefinition service, string password)
    {
        var key = $@"HKLM\SYSTEM\CurrentControlSet\Services\{ServiceName}";
        var environment = string.Join(@"\0", service.Environment.Select(e => $"{e.Key}={e.Value}"));
        return
        [
            ["sc.exe", "create", ServiceName, "binPath=", BinPath(service), "start=", "delayed-auto", "DisplayName=", "LmsProxy",
                "obj=", Account(service.UserName), "password=", password],
            ["sc.exe", "description", ServiceName, ServiceDefinition.Description],
            ["sc.exe", "failure", ServiceName, "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000"],
            ["reg.exe", "add", key, "/v", "Environment", "/t", "REG_MULTI_SZ", "/d", environment, "/f"],
            ["sc.exe", "start", ServiceName],
        ];
    }

    public static string[][] UninstallCommands() => [["sc.exe", "stop", ServiceName], ["sc.exe", "delete", ServiceName]];

    public static string[] StatusCommand() => ["sc.exe", "query", ServiceName];

    /// <summary>One argument quoted for CommandLineToArgvW: backslashes doubled only before a quote.</summary>
    internal static string Quote(string argument)
    {
        if (argument.Length > 0 && !argument.Any(c => c is ' ' or '\t' or '"')) return argument;
        var quoted = new System.Text.StringBuilder("\"");
        var backslashes = 0;
        foreach (var c in argument)
        {
            if (c == '\\') { backslashes++; continue; }
            quoted.Append('\\', c == '"' ? backslashes * 2 + 1 : backslashes).Append(c);
            backslashes = 0;
        }
        return quoted.Append('\\', backslashes * 2).Append('"').ToString();
    }

    /// <summary>A command as one would type it in a console (for --print).</summary>
    public static string Display(string[] command) => string.Join(' ', command.Select(Quote));
}
