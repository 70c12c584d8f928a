using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace LmsProxy.Tests.Infrastructure;

/// <summary>
/// Every log line the proxy wrote, formatted, so tests can read what an operator would see. A line that carries an
/// exception (which the console logger prints with its stack trace) carries "[exception Type: message]" and then the exception with its stack trace.
/// </summary>
public sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)}" + (exception is null ? "" : $" [exception {exception.GetType().Name}: {exception.Message}]" + Environment.NewLine + exception));
    }
}
