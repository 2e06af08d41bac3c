#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

/// A dataset read from disk while training runs: the shards of a manifest
/// (`ShardManifest`) this rank owns, streamed by one prefetch thread
/// through a seeded shuffle buffer into a bounded ring of ready samples.
///
/// Position p of epoch e is a pure function of (seed, e, p): the shards are
/// visited in an order drawn from (seed, e), their rows in file order enter
/// a buffer of K rows, and each new row evicts a buffer slot drawn from the
/// same stream (the last K rows leave in a drawn order). K = 1 and no seed
/// shuffle: file order. So a batcher asks for positions, never for samples
/// (`ordersItself`), and reading is sequential within each shard.
///
/// Memory: the K-row buffer (input dtype), the ring (float32 rows), one
/// read chunk (about 1 MiB) and the targets of this rank's shards (4 bytes
/// a value, read when the dataset opens). Inputs are read with pread, not
/// mapped: the page cache holds what was read until it is dropped
/// (posix_fadvise DONTNEED after each chunk), and a shard truncated while
/// it streams is an error at the next read, not a SIGBUS.
public final class ShardStream: BatchSource {
    public let count: Int
    public let inputShape: Shape
    public let numClasses: Int?
    public var ordersItself: Bool { true }
    /// This rank's targets, in stream order of the shards' rows (sample id order).
    public let targets: Tensor
    public let manifest: ShardManifest
    /// Manifest indices of the shards this rank streams.
    public let chosenShards: [Int]
    private let engine: StreamEngine
    private let users = Lock()
    /// The sample ids of a batch's rows (under `users`).
    private var idScratch: [Int] = []

    /// Opens the dataset at `path` (see `ShardManifest`) for rank `rank`
    /// of `ranks`: shards i with i % ranks == rank (none: an empty dataset,
    /// which only local data can train on). `shuffleBuffer` K ≥ 1
    /// (1: no shuffling at all, shards in manifest order), `prefetchRows`
    /// ≥ 1 the ring's size. Every shard's header is checked first and this
    /// rank's targets read; on an error nothing stays open.
    public init(path: String, seed: UInt64, shuffleBuffer: Int, prefetchRows: Int, rank: Int, ranks: Int) throws {
        guard ranks >= 1, rank >= 0, rank < ranks else {
            throw ParmlError.invalidArgument("rank \(rank) of \(ranks): need 0 <= rank < ranks")
        }
        guard shuffleBuffer >= 1, shuffleBuffer <= 1 << 30 else {
            throw ParmlError.invalidArgument("shuffle buffer must be 1 (no shuffling) ... 2^30 rows, got \(shuffleBuffer)")
        }
        guard prefetchRows >= 1, prefetchRows <= 1 << 30 else {
            throw ParmlError.invalidArgument("prefetch must be 1 ... 2^30 rows, got \(prefetchRows)")
        }
        let m = try ShardManifest.read(path: path)
        // A rank past the last shard gets none: an empty dataset, for local data (Trainer.setLocalData).
        let chosen = Array(stride(from: rank, to: m.shards.count, by: ranks))
        manifest = m
        chosenShards = chosen
        try m.verifyChecksums(chosen)  // before anything is read from the shards
        targets = try m.readTargets(chosen)
        let n = chosen.reduce(0) { $0 + m.shards[$1].rows }
        count = n
        inputShape = try Shape([n] + m.sampleDims)
        numClasses = n > 0 && (targets.shape.rank == 1 || targets.dtype == .int32) ? Dataset.classCount(targets) : nil
        engine = try StreamEngine(
            shards: chosen.map { m.shards[$0] }, element: m.inputElement, rowElements: m.sampleDims.reduce(1, *), seed: seed,
            shuffleBuffer: shuffleBuffer, ringRows: prefetchRows)
    }

    deinit { engine.stop() }

    /// Copies positions `samples` of epoch `epoch` (from the ring; a
    /// position other than the next one restarts the stream there, which
    /// is correct but re-reads the epoch up to it).
    public func copy(samples: UnsafeBufferPointer<Int>, epoch: Int, inputs: Tensor, targets batchTargets: Tensor) throws {
        guard inputs !== batchTargets, inputs !== targets, batchTargets !== targets else {
            throw ParmlError.invalidArgument("fill needs two distinct tensors that are not the dataset's own")
        }
        guard epoch >= 0 else { throw ParmlError.invalidArgument("epoch \(epoch) is negative") }
        let rows = samples.count
        try inputs.resize(inputShape.withLeading(rows), dtype: .float32)
        try batchTargets.resize(targets.shape.withLeading(rows), dtype: targets.dtype)
        let tRow = targets.shape.rowSize
        try users.locked {
            if idScratch.count < rows { idScratch = [Int](repeating: 0, count: rows) }  // grows once, then reused
            try idScratch.withUnsafeMutableBufferPointer { ids in
                var r = 0
                while r < rows {
                    // A run of consecutive positions: the ring hands them over together.
                    let p = samples[r]
                    guard p >= 0, p < count else { throw ParmlError.invalidArgument("position \(p) is outside the epoch's \(count) samples") }
                    var run = 1
                    while r + run < rows && samples[r + run] == p + run && p + run < count { run += 1 }
                    let k = try engine.take(
                        epoch: epoch, position: p, count: run, into: inputs.data + r * engine.rowElements, ids: ids.baseAddress! + r)
                    for i in r..<r + k { (batchTargets.int32s + i * tRow).update(from: targets.int32s + ids[i] * tRow, count: tRow) }
                    r += k
                }
            }
        }
    }

    /// Without samples (a rank without shards) one row of zeros stands in:
    /// the sample shape and target type are what is checked.
    public func fitProbe() throws -> (inputShape: Shape, targets: Tensor) {
        count > 0 ? (inputShape, targets) : (inputShape.withLeading(1), targets)
    }

    /// Sample ids (row of this rank's shards, stacked in manifest order) of
    /// positions 0..<count of `epoch`, computed without reading inputs.
    public func order(epoch: Int) -> [Int] { engine.order(epoch: epoch) }
}

/// A pthread mutex for callers of one stream (a trainer per thread may share a dataset).
final class Lock: @unchecked Sendable {
    private let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(m, nil) }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}
