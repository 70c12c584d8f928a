using Microsoft.Extensions.Primitives;

namespace LmsProxy.Configuration;

/// <summary>
/// The settings in force. Bound and validated at start-up (invalid stops the program); re-bound when
/// appsettings.json changes on disk, where an invalid edit is logged and the last good settings stay.
/// </summary>
internal sealed partial class ProxySettings : IDisposable
{
    private readonly IConfiguration _configuration;
    private readonly ILogger<ProxySettings> _logger;
    private readonly IDisposable _reloadSubscription;
    private volatile LmsProxyOptions _current;

    public ProxySettings(IConfiguration configuration, ILogger<ProxySettings> logger)
    {
        _configuration = configuration;
        _logger = logger;
        _current = Bind(configuration, out var errors) ?? throw new InvalidSettingsException(errors);
        _reloadSubscription = ChangeToken.OnChange(configuration.GetReloadToken, Reload);
    }

    public LmsProxyOptions Current => _current;

    /// <summary>Raised after new settings took effect.</summary>
    public event Action<LmsProxyOptions>? Changed;

    /// <summary>Binds and validates; null with the reasons when the section is invalid.</summary>
    public static LmsProxyOptions? Bind(IConfiguration configuration, out List<string> errors)
    {
        var options = new LmsProxyOptions();
        try
        {
            var section = configuration.GetSection(LmsProxyOptions.SectionName);
            section.Bind(options);
            // Each concern's keys sit directly under the section (LmsProxy:HoldTimeout), so each part binds from it.
            section.Bind(options.Loading);
            section.Bind(options.Holding);
            section.Bind(options.Forwarding);
            section.Bind(options.Access);
            foreach (var (name, host) in options.Hosts)
            {
                // A host's Capacity overrides the shared settings key by key.
                host.Name = name;
                host.Capacity = options.Capacity.Clone();
                section.GetSection($"Hosts:{name}:Capacity").Bind(host.Capacity);
            }
        }
        catch (InvalidOperationException ex)
        {
            // The binder's message names the key and the value it could not convert.
            errors = [(ex.InnerException?.Message is { } inner ? $"{ex.Message} {inner}" : ex.Message)];
            return null;
        }
        errors = OptionsValidation.Validate(options);
        return errors.Count == 0 ? options : null;
    }

    private void Reload()
    {
        var next = Bind(_configuration, out var errors);
        if (next is null)
        {
            LogRejected(_logger, string.Join(" ", errors));
            return;
        }
        _current = next;
        LogApplied(_logger);
        Changed?.Invoke(next);
    }

    public void Dispose() => _reloadSubscription.Dispose();

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "Configuration change rejected, the previous settings stay in force: {Reasons}")]
    private static partial void LogRejected(ILogger logger, string reasons);

    [LoggerMessage(EventId = 11, Level = LogLevel.Information, Message = "Configuration change applied")]
    private static partial void LogApplied(ILogger logger);
}

internal sealed class InvalidSettingsException(IReadOnlyList<string> errors)
    : Exception("Invalid configuration: " + string.Join(" ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}
