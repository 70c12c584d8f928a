using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Tests.Units;

public sealed class ModelCatalogTests
{
    private static readonly ModelCatalog Catalog = new(
    [
        new CatalogModel("qwen/qwen3-8b", "llm", ["qwen/qwen3-8b", "qwen/qwen3-8b:2"]),
        new CatalogModel("lmstudio-community/qwen3-8b", "llm", []),
        new CatalogModel("google/gemma-3-1b", "llm", []),
        new CatalogModel("text-embedding-nomic", "embedding", []),
    ]);

    [Theory]
    [InlineData("qwen/qwen3-8b", "qwen/qwen3-8b")]
    [InlineData("QWEN/Qwen3-8B", "qwen/qwen3-8b")]
    [InlineData("qwen/qwen3-8b:2", "qwen/qwen3-8b")]
    [InlineData("gemma-3-1b", "google/gemma-3-1b")]
    [InlineData("google/gemma-3-1b@q4_k_m", "google/gemma-3-1b")]
    [InlineData("text-embedding-nomic", "text-embedding-nomic")]
    public void Resolve_FindsTheModelByKeyInstanceBareNameOrQuant(string name, string key) =>
        Assert.Equal(key, Catalog.Resolve(name)?.Key);

    [Theory]
    [InlineData("qwen3-8b")] // two publishers have it: ambiguous, never guessed
    [InlineData("gemma")]
    [InlineData("@q4")]
    public void Resolve_RefusesAmbiguousOrPartialNames(string name) => Assert.Null(Catalog.Resolve(name));

    [Fact]
    public void Registry_TracksLoadsAndEvictions_WithoutIo()
    {
        var registry = new ModelRegistry(TimeProvider.System);
        Assert.True(registry.Update(Catalog, registry.Version));

        Assert.True(registry.IsLoaded("qwen/qwen3-8b"));
        Assert.True(registry.IsLoaded("qwen/qwen3-8b:2"));
        Assert.False(registry.IsLoaded("gemma-3-1b"));

        registry.MarkLoaded("google/gemma-3-1b", "google/gemma-3-1b");
        registry.MarkNotLoaded("qwen/qwen3-8b");

        Assert.True(registry.IsLoaded("gemma-3-1b"));
        Assert.False(registry.IsLoaded("qwen/qwen3-8b"));
        Assert.False(registry.IsLoaded("qwen/qwen3-8b:2"));
    }

    [Fact]
    public void Registry_DoesNotLetAnOlderCatalogUndoALoadThatFinishedDuringTheRead()
    {
        var registry = new ModelRegistry(TimeProvider.System);
        registry.Update(Catalog, registry.Version);
        var readStarted = registry.Version;        // a refresh starts reading LM Studio's list...
        registry.MarkLoaded("google/gemma-3-1b", "google/gemma-3-1b"); // ...a load finishes meanwhile...

        var applied = registry.Update(Catalog, readStarted);           // ...and the older list arrives.

        Assert.False(applied);
        Assert.True(registry.IsLoaded("google/gemma-3-1b"));
        Assert.True(registry.Update(Catalog, registry.Version));       // the next read applies
        Assert.False(registry.IsLoaded("google/gemma-3-1b"));
    }

    [Theory]
    [InlineData("qwen/qwen3-8b", null)]
    [InlineData("-y", "must not start with '-'")]
    [InlineData("", "empty")]
    [InlineData("a\tb", "control character")]
    [InlineData(" qwen", "leading or trailing spaces")]
    public void ModelName_Problem(string name, string? problem)
    {
        var found = ModelName.Problem(name);
        if (problem is null) Assert.Null(found);
        else Assert.Contains(problem, found);
    }

    [Fact]
    public void OptionsValidation_NamesEveryBadKey()
    {
        var options = new LmsProxyOptions
        {
            Upstream = new Uri("http://localhost:1234/v1"),
            MaxHeldPerModel = 0,
            NotLoadedRetries = 11,
            Preload = ["-bad"],
            ApiKeys = ["short"],
            Models = { ["m"] = new ModelLoadSettings { Gpu = "2", Ttl = 0 } },
        };

        var errors = OptionsValidation.Validate(options);

        Assert.Collection(errors,
            e => Assert.Contains("LmsProxy:Upstream must not have a path", e),
            e => Assert.Contains("LmsProxy:MaxHeldPerModel", e),
            e => Assert.Contains("LmsProxy:NotLoadedRetries", e),
            e => Assert.Contains("LmsProxy:ApiKeys", e),
            e => Assert.Contains("LmsProxy:Preload entry '-bad'", e),
            e => Assert.Contains("LmsProxy:Models:m:Ttl", e),
            e => Assert.Contains("LmsProxy:Models:m:Gpu", e));
        Assert.Empty(OptionsValidation.Validate(new LmsProxyOptions()));
    }
}
