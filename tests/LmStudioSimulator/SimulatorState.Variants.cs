namespace LmStudioSimulator;

/// <summary>Which variant of a multi-variant model a load of its base key gets (addendum F3), and how that flips.</summary>
public sealed partial class SimulatorState
{
    private readonly Dictionary<string, string> _selectedVariants = new(StringComparer.OrdinalIgnoreCase); // guarded by _lock

    /// <summary>The variant a load of the base key gets now; null for a single-file model.</summary>
    public string? SelectedVariant(SimModel model)
    {
        if (!model.HasVariants) return null;
        lock (_lock) return _selectedVariants.GetValueOrDefault(model.Key) ?? model.Variants![0];
    }

    /// <summary>Selects a variant, as the user does in LM Studio's UI (or a finished download does for them).</summary>
    public void SelectVariant(SimModel model, string variant)
    {
        if (model.Variants?.Contains(variant, StringComparer.OrdinalIgnoreCase) != true) throw new ArgumentException($"{variant} is not a variant of {model.Key}");
        lock (_lock) _selectedVariants[model.Key] = variant;
    }

    private void FlipVariant(SimModel model)
    {
        if (!Options.FlipSelectedVariantOnLoad || !model.HasVariants) return;
        var current = SelectedVariant(model)!;
        var next = model.Variants![(model.Variants.ToList().IndexOf(current) + 1) % model.Variants.Count];
        lock (_lock) _selectedVariants[model.Key] = next;
    }

    /// <summary>The quantization name of a variant key ("google/gemma-4-31b@8bit" → "8bit"), else the simulator's Q4_K_M.</summary>
    public static string QuantizationOf(string? variant) => variant?.IndexOf('@') is > 0 and var at ? variant[(at + 1)..] : "Q4_K_M";
}
