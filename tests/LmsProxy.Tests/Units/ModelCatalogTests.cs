using LmsProxy.Configuration;
using LmsProxy.Models;

namespace LmsProxy.Tests.Units;

public sealed class ModelCatalogTests
{
    private static readonly ModelCatalog Catalog = new(
    [
        new CatalogModel("qwen/qwen3-8b", "llm", [new LoadedInstance("qwen/qwen3-8b"), new LoadedInstance("qwen/qwen3-8b:2")]),
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
    public void Union_ListsEachModelOnce_AndResolvesInstancesOfEveryHost()
    {
        var other = new ModelCatalog([new CatalogModel("google/gemma-3-1b", "llm", [new LoadedInstance("google/gemma-3-1b")]), new CatalogModel("openai/gpt-oss-20b", "llm", [])]);

        var union = ModelCatalog.Union([Catalog, other]);

        Assert.Equal(["qwen/qwen3-8b", "lmstudio-community/qwen3-8b", "google/gemma-3-1b", "text-embedding-nomic", "openai/gpt-oss-20b"], union.Models.Select(m => m.Key));
        Assert.Equal("qwen/qwen3-8b", union.Resolve("qwen/qwen3-8b:2")?.Key);
        Assert.True(union.Resolve("gemma-3-1b")!.IsLoaded);
        Assert.Contains("gemma-3-1b", union.NamesOf("google/gemma-3-1b"));
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

    [Theory]
    [InlineData("qwen/*", "qwen/qwen3-8b", true)]
    [InlineData("QWEN/*", "qwen/qwen3-8b", true)]
    [InlineData("qwen/*", "google/qwen", false)]
    [InlineData("*8b", "qwen/qwen3-8b", true)]
    [InlineData("*8b", "qwen/qwen3-8b-instruct", false)]
    [InlineData("*qwen*8b*", "lmstudio/qwen3-8b-gguf", true)]
    [InlineData("qwen/qwen3-?b", "qwen/qwen3-8b", true)]
    [InlineData("qwen/qwen3-?b", "qwen/qwen3-14b", false)]
    [InlineData("qwen/qwen3-8b", "qwen/qwen3-8b", true)]
    [InlineData("qwen/qwen3-8b", "qwen/qwen3-8b2", false)]
    [InlineData("a*b*c", "aXbYbZc", true)]
    [InlineData("a*b*c", "aXbYbZ", false)]
    [InlineData("*", "", true)]
    [InlineData("a.b", "aXb", false)]
    public void ModelName_Matches_GlobsOfTheModelsAllowList(string pattern, string name, bool expected) =>
        Assert.Equal(expected, ModelName.Matches(pattern, name));

    [Fact]
    public void OptionsValidation_NamesEveryBadKey()
    {
        var options = new LmsProxyOptions
        {
            Upstream = new Uri("http://localhost:1234/v1"),
            Holding = { MaxHeldPerModel = 0 },
            Loading = { Preload = ["-bad"], Models = { ["m"] = new ModelLoadSettings { Gpu = "2", Ttl = 0 } } },
            Access = { ApiKeys = ["short"] },
        };

        var errors = OptionsValidation.Validate(options);

        Assert.Collection(errors,
            e => Assert.Contains("LmsProxy:Upstream must not have a path", e),
            e => Assert.Contains("LmsProxy:MaxHeldPerModel", e),
            e => Assert.Contains("LmsProxy:ApiKeys", e),
            e => Assert.Contains("LmsProxy:Preload entry '-bad'", e),
            e => Assert.Contains("LmsProxy:Models:m:Ttl", e),
            e => Assert.Contains("LmsProxy:Models:m:Gpu", e));
        Assert.Empty(OptionsValidation.Validate(new LmsProxyOptions()));
    }
}

public sealed class HostOptionsValidationTests
{
    [Fact]
    public void Hosts_AreValidated_WithOneSentencePerProblem()
    {
        var options = new LmsProxyOptions
        {
            Hosts =
            {
                ["gpu-a"] = new LmStudioHostOptions { Url = new Uri("http://10.0.0.1:1234") },
                ["gpu b"] = new LmStudioHostOptions { Url = new Uri("http://10.0.0.2:1234") },
                ["gpu-c"] = new LmStudioHostOptions { Url = null },
                ["gpu-d"] = new LmStudioHostOptions { Url = new Uri("http://10.0.0.1:1234"), Capacity = new CapacityOptions { MaxLoadedModels = -1 } },
            },
            Capacity = { MaxSwapWait = "-00:00:01" },
        };

        var errors = OptionsValidation.Validate(options);

        Assert.Contains(errors, e => e.Contains("LmsProxy:Hosts:gpu b: a host name", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("LmsProxy:Hosts:gpu-c:Url is required", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("LmsProxy:Hosts:gpu-d:Url is the same LM Studio as LmsProxy:Hosts:gpu-a:Url", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("LmsProxy:Hosts:gpu-d:Capacity:MaxLoadedModels", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("LmsProxy:Capacity:MaxSwapWait", StringComparison.Ordinal));
        Assert.DoesNotContain(errors, e => e.StartsWith("LmsProxy:Hosts:gpu-a", StringComparison.Ordinal));
    }
}
