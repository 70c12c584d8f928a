using System.Globalization;
using System.Text.RegularExpressions;

namespace LmsProxy.Loading;

/// <summary>
/// Reads the percentage out of lms load's spinner on stdout (addendum F1): <c>\x1b[?25l</c>, then frames
/// <c>\r&lt;text&gt; &lt;glyph&gt;</c> about every 80 ms whose text carries "37%", then <c>\r\x1b[K\x1b[?25h</c>.
/// Pipe reads cut frames anywhere, so a piece like "7% ⠙" (the end of "37% ⠙") must not count: only a frame read
/// from its <c>\r</c> through the glyph after its percentage is taken.
/// </summary>
internal sealed partial class SpinnerProgress(Action<double> report)
{
    private string _partial = "";

    public void Feed(string chunk)
    {
        var text = _partial + chunk;
        var lastFrame = text.LastIndexOf('\r');
        // Keep the frame being drawn (from its \r on) for the next chunk; text before the first \r is no frame.
        _partial = lastFrame >= 0 ? text[lastFrame..] : "";
        if (_partial.Length > 4096) _partial = ""; // never a frame: no reason to keep it
        double? latest = null;
        foreach (var frame in (lastFrame >= 0 ? text[..(lastFrame + 1)] : "").Split('\r').Append(_partial))
        {
            if (Percent().Match(frame) is { Success: true } m && int.TryParse(m.Groups[1].Value, CultureInfo.InvariantCulture, out var percent))
            {
                latest = Math.Clamp(percent, 0, 100) / 100.0;
            }
        }
        if (latest is { } value) report(value);
    }

    /// <summary>A percentage with the frame's glyph (or more text) after it: the frame was read that far.</summary>
    [GeneratedRegex(@"(?<![\d.])(\d{1,3})%\s+\S")]
    private static partial Regex Percent();
}
