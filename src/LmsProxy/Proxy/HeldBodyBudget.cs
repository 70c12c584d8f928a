using System.Buffers;

namespace LmsProxy.Proxy;

/// <summary>
/// The bytes of inference bodies the proxy holds, across all models (LmsProxy:MaxHeldBodyBytes): a body is read whole
/// before it waits for its model, so without a cap 1,000 held requests per model of 32 MiB each could take all the
/// memory. Each buffer is charged by its length while a request holds it, and given back when the request ends.
/// </summary>
internal sealed class HeldBodyBudget
{
    /// <summary>Buffers up to this size come from, and go back to, the shared pool; larger ones are left to the GC.</summary>
    public const int PooledUpTo = 1024 * 1024;

    private long _held;

    /// <summary>Bytes charged now.</summary>
    public long Held => Volatile.Read(ref _held);

    /// <summary>A buffer of at least <paramref name="size"/> bytes charged to the budget, or null when it would pass <paramref name="cap"/>.</summary>
    public byte[]? TryRent(int size, long cap)
    {
        if (Interlocked.Add(ref _held, ChargeFor(size)) > cap)
        {
            Interlocked.Add(ref _held, -ChargeFor(size));
            return null;
        }
        // A pooled buffer above 1 MiB would stay in the pool after its request (the pool keeps what it is given back).
        return size <= PooledUpTo ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);
    }

    /// <summary>Gives a buffer from <see cref="TryRent"/> back, and its bytes to the budget.</summary>
    public void Return(byte[] buffer)
    {
        Interlocked.Add(ref _held, -ChargeFor(buffer.Length));
        if (buffer.Length <= PooledUpTo) ArrayPool<byte>.Shared.Return(buffer);
    }

    // What a pooled buffer really takes: the pool hands out powers of two (at least 16 bytes).
    private static long ChargeFor(int size) => size <= PooledUpTo ? Math.Max(16, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)size)) : size;
}
