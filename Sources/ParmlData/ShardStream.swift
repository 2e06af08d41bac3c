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

/// The prefetch thread and what it shares with the consumer. The consumer
/// asks for (epoch, position) in order; the producer writes positions
/// ahead of it into a ring of `ringRows` rows, at most that far ahead.
final class StreamEngine: @unchecked Sendable {
    // Streams of Philox draws: the shard order and the buffer's evictions of epoch e.
    static func shardOrderStream(epoch: Int) -> UInt64 { 0xD000_0000_0000 | UInt64(epoch) }
    static func bufferStream(epoch: Int) -> UInt64 { 0xD800_0000_0000 | UInt64(epoch) }

    let shards: [Shard]
    /// First sample id of each shard, and the total.
    let firstID: [Int]
    let element: NPYElement
    let rowElements: Int
    let rowBytes: Int
    let seed: UInt64
    let bufferRows: Int
    let ringRows: Int
    let chunkRows: Int

    // Shared state, under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var generation = 0
    private var jobEpoch = -1
    private var produced = 0
    private var consumed = 0
    private var failure: ParmlError?
    private var quit = false
    private var thread: pthread_t?

    private let ring: UnsafeMutablePointer<Float>
    private let ringIDs: UnsafeMutablePointer<Int>
    // The producer's own memory.
    private let buffer: UnsafeMutableRawPointer
    private let bufferIDs: UnsafeMutablePointer<Int>
    private let chunk: UnsafeMutableRawPointer

    init(shards: [Shard], element: NPYElement, rowElements: Int, seed: UInt64, shuffleBuffer: Int, ringRows: Int) throws {
        self.shards = shards
        var first = [0]
        for s in shards { first.append(first.last! + s.rows) }
        firstID = first
        self.element = element
        self.rowElements = rowElements
        rowBytes = rowElements * element.size
        self.seed = seed
        bufferRows = min(shuffleBuffer, first.last!)
        self.ringRows = ringRows
        chunkRows = max(1, (1 << 20) / max(rowBytes, 1))
        func allocate(_ bytes: Int) throws -> UnsafeMutableRawPointer {
            guard let p = malloc(max(bytes, 1)) else { throw ParmlError.outOfMemory("a shard stream could not allocate \(bytes) bytes") }
            return p
        }
        ring = try allocate(ringRows * rowElements * 4).assumingMemoryBound(to: Float.self)
        ringIDs = try allocate(ringRows * 8).assumingMemoryBound(to: Int.self)
        buffer = try allocate(bufferRows * rowBytes)
        bufferIDs = try allocate(bufferRows * 8).assumingMemoryBound(to: Int.self)
        chunk = try allocate(chunkRows * rowBytes)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
        for p in [UnsafeMutableRawPointer(ring), UnsafeMutableRawPointer(ringIDs), buffer, UnsafeMutableRawPointer(bufferIDs), chunk] { free(p) }
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }
    private func wait() { pthread_cond_wait(changed, mutex) }
    private func wake() { pthread_cond_broadcast(changed) }

    /// Ends the prefetch thread (the dataset's deinit).
    func stop() {
        lock()
        quit = true
        wake()
        let t = thread
        unlock()
        if let t { pthread_join(t, nil) }
    }

    /// The consumer: waits for position `p` of `epoch`, copies the float32
    /// rows of positions p..<p+k to `out` and their sample ids to `ids`, for
    /// the k ≤ `count` rows ready, and returns k (≥ 1). Restarts the
    /// producer when (epoch, p) is not the next position it is making.
    /// Rows are copied outside the lock: the producer never writes the slot
    /// of a position the consumer has not passed yet.
    func take(epoch: Int, position p: Int, count: Int, into out: UnsafeMutablePointer<Float>, ids: UnsafeMutablePointer<Int>) throws -> Int {
        lock()
        if thread == nil {
            do { try startThread() } catch {
                unlock()
                throw error
            }
        }
        if jobEpoch != epoch || consumed != p {
            generation += 1
            jobEpoch = epoch
            produced = p
            consumed = p
            failure = nil
            wake()
        }
        while produced <= p {
            if let failure {
                unlock()
                throw failure
            }
            wait()
        }
        let k = min(count, produced - p)
        unlock()
        for i in 0..<k {
            let slot = (p + i) % ringRows
            (out + i * rowElements).update(from: ring + slot * rowElements, count: rowElements)
            ids[i] = ringIDs[slot]
        }
        lock()
        consumed = p + k
        wake()
        unlock()
        return k
    }

    private func startThread() throws {
        var t = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&t, nil, { arg in
            let engine = Unmanaged<StreamEngine>.fromOpaque(arg!).takeRetainedValue()
            engine.produce()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<StreamEngine>.fromOpaque(box).release()
            throw ParmlError.internal("could not start the prefetch thread (pthread_create: \(rc))")
        }
        thread = t
    }

    /// The thread: runs each job (generation) until it ends, is replaced or quit.
    private func produce() {
        lock()
        var done = 0
        while true {
            while !quit && generation == done { wait() }
            if quit { break }
            let gen = generation, epoch = jobEpoch, start = produced
            unlock()
            var next: (epoch: Int, failed: ParmlError?) = (epoch, nil)
            do { try run(gen: gen, epoch: epoch, start: start) } catch let e as ParmlError { next.failed = e } catch {
                next.failed = .internal("\(error)")
            }
            lock()
            done = gen
            if generation == gen, !quit {
                if let f = next.failed {
                    failure = f
                    wake()
                } else {
                    // The epoch is made: once the consumer has it all, start the next one.
                    let total = firstID.last!
                    while generation == gen && !quit && consumed < total { wait() }
                    if generation == gen && !quit {
                        generation += 1
                        jobEpoch = epoch + 1
                        produced = 0
                        consumed = 0
                    }
                }
            }
        }
        unlock()
    }

    /// The shard order of `epoch`: manifest order without shuffling, else a
    /// Fisher–Yates permutation drawn from (seed, epoch).
    func shardOrder(epoch: Int) -> [Int] {
        var order = Array(shards.indices)
        guard bufferRows > 1, order.count > 1 else { return order }
        var draws = DrawSequence(rng: Philox(seed: seed), stream: Self.shardOrderStream(epoch: epoch))
        var i = order.count - 1
        while i > 0 {
            order.swapAt(i, Int(draws.below(UInt64(i + 1))))
            i -= 1
        }
        return order
    }

    /// The buffer's schedule, the one definition of the order: calls
    /// `enter(slot, id)` as row `id` fills a slot, `emit(slot)` as a slot
    /// leaves and `move(from, to)` as the drain closes a gap, in stream
    /// order; `emit` returning false ends it early.
    private func schedule(
        epoch: Int, enter: (Int, Int) throws -> Void, emit: (Int) throws -> Bool, move: (Int, Int) -> Void
    ) throws {
        let k = bufferRows
        var draws = DrawSequence(rng: Philox(seed: seed), stream: Self.bufferStream(epoch: epoch))
        var filled = 0
        for s in shardOrder(epoch: epoch) {
            for id in firstID[s]..<firstID[s + 1] {
                if filled < k {
                    try enter(filled, id)
                    filled += 1
                    continue
                }
                let j = Int(draws.below(UInt64(k)))
                guard try emit(j) else { return }
                try enter(j, id)
            }
        }
        var m = filled
        while m > 0 {
            let j = Int(draws.below(UInt64(m)))
            guard try emit(j) else { return }
            if j != m - 1 { move(m - 1, j) }
            m -= 1
        }
    }

    /// The sample ids of positions 0..<count of `epoch`, without reading.
    func order(epoch: Int) -> [Int] {
        var ids = [Int](repeating: 0, count: bufferRows)
        var out: [Int] = []
        out.reserveCapacity(firstID.last!)
        try? schedule(
            epoch: epoch, enter: { ids[$0] = $1 },
            emit: { j in
                out.append(ids[j])
                return true
            }, move: { ids[$1] = ids[$0] })
        return out
    }

    /// One job: makes positions start..< of `epoch` into the ring. Before
    /// `start` only ids move (no reads); at `start` the rows then in the
    /// buffer are read by id, and from there rows stream chunk by chunk.
    private func run(gen: Int, epoch: Int, start: Int) throws {
        var reader = ChunkReader(engine: self)
        defer { reader.close() }
        var position = 0
        var reading = start == 0
        var filled = 0
        var outbox = Outbox(gen: gen, published: start, consumed: start)
        try schedule(
            epoch: epoch,
            enter: { slot, id in
                self.bufferIDs[slot] = id
                filled = max(filled, slot + 1)
                if reading { try reader.read(id: id, into: self.buffer + slot * self.rowBytes) }
            },
            emit: { slot in
                if position == start && !reading {
                    for s in 0..<filled { try reader.readAlone(id: self.bufferIDs[s], into: self.buffer + s * self.rowBytes) }
                    reading = true
                }
                if position >= start {
                    guard self.place(slot: slot, position: position, &outbox) else { return false }
                }
                position += 1
                return true
            },
            move: { a, b in
                self.bufferIDs[b] = self.bufferIDs[a]
                (self.buffer + b * self.rowBytes).copyMemory(from: self.buffer + a * self.rowBytes, byteCount: self.rowBytes)
            })
        _ = flush(position, &outbox)
    }

    /// What the producer knows of the ring between the times it takes the
    /// lock: rows it placed up to `published`, and the consumer's position
    /// when it last looked.
    struct Outbox {
        let gen: Int
        var published: Int
        var consumed: Int
    }

    /// Rows placed in the ring are published in groups of this many (one
    /// lock and wake-up a group, not a row), and whenever the ring is full.
    static let publishEvery = 32

    /// Converts buffer slot `slot` into the ring as `position`, first
    /// waiting for room when the ring is full. False when the job was
    /// replaced (or quit).
    private func place(slot: Int, position: Int, _ box: inout Outbox) -> Bool {
        if position - box.consumed >= ringRows {
            lock()
            if generation == box.gen { produced = position }
            box.published = position
            wake()
            while generation == box.gen && !quit && position - consumed >= ringRows { wait() }
            box.consumed = consumed
            let live = generation == box.gen && !quit
            unlock()
            guard live else { return false }
        }
        let r = position % ringRows
        convert(buffer + slot * rowBytes, to: ring + r * rowElements)
        ringIDs[r] = bufferIDs[slot]
        if position + 1 - box.published >= Self.publishEvery { return flush(position + 1, &box) }
        return true
    }

    /// Publishes the rows placed before `end`. False when the job was replaced.
    private func flush(_ end: Int, _ box: inout Outbox) -> Bool {
        lock()
        let live = generation == box.gen && !quit
        if live { produced = end }
        box.published = end
        box.consumed = consumed
        wake()
        unlock()
        return live
    }

    /// One row of the input element type → float32, as `NPY.inputs` converts
    /// (uint8 / 255; every streamed type is exact in float32).
    private func convert(_ src: UnsafeRawPointer, to out: UnsafeMutablePointer<Float>) {
        let n = rowElements
        switch element {
        case .float32: UnsafeMutableRawPointer(out).copyMemory(from: src, byteCount: n * 4)
        case .uint8: for i in 0..<n { out[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) / 255 }
        case .int8: for i in 0..<n { out[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .bool: for i in 0..<n { out[i] = src.load(fromByteOffset: i, as: UInt8.self) == 0 ? 0 : 1 }
        case .int16: for i in 0..<n { out[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .uint16: for i in 0..<n { out[i] = Float(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .float16:
            for i in 0..<n { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        case .float64:
            for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .int32, .uint32, .int64, .uint64: for i in 0..<n { out[i] = .nan }  // refused when the manifest is read
        }
    }

    /// Where sample `id` lives: its shard (index into `shards`) and row.
    func locate(_ id: Int) -> (shard: Int, row: Int) {
        var lo = 0, hi = shards.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if firstID[mid] <= id { lo = mid } else { hi = mid - 1 }
        }
        return (lo, id - firstID[lo])
    }

    /// Reads shard rows with pread: one open shard, a chunk of rows read at
    /// a time, the chunk's pages dropped from the page cache once read.
    struct ChunkReader {
        let engine: StreamEngine
        var fd: Int32 = -1
        var shard = -1
        var chunkFirst = 0
        var chunkEnd = 0

        init(engine: StreamEngine) { self.engine = engine }

        mutating func close() {
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
            shard = -1
        }

        mutating func open(_ s: Int) throws {
            close()
            let info = engine.shards[s]
            let f = Glibc.open(info.inputsPath, O_RDONLY | O_CLOEXEC)
            guard f >= 0 else { throw ParmlError.io("\(info.inputsPath): cannot open: \(String(cString: strerror(errno)))") }
            var st = stat()
            guard fstat(f, &st) == 0, Int(st.st_size) == info.fileSize else {
                _ = Glibc.close(f)
                throw ParmlError.io("\(info.inputsPath): changed on disk since the dataset was opened (\(info.fileSize) bytes then)")
            }
            _ = posix_fadvise(f, 0, 0, POSIX_FADV_SEQUENTIAL)
            fd = f
            shard = s
            chunkFirst = 0
            chunkEnd = 0
        }

        /// Row `id` for a stream that reads rows in order within a shard.
        mutating func read(id: Int, into out: UnsafeMutableRawPointer) throws {
            let (s, row) = engine.locate(id)
            if s != shard { try open(s) }
            if row < chunkFirst || row >= chunkEnd {
                let rows = min(engine.chunkRows, engine.shards[s].rows - row)
                try pread(rows: rows, at: row, into: engine.chunk)
                chunkFirst = row
                chunkEnd = row + rows
            }
            out.copyMemory(from: engine.chunk + (row - chunkFirst) * engine.rowBytes, byteCount: engine.rowBytes)
        }

        /// One row on its own (the buffer's rows when a stream restarts mid-epoch).
        mutating func readAlone(id: Int, into out: UnsafeMutableRawPointer) throws {
            let (s, row) = engine.locate(id)
            if s != shard { try open(s) }
            try pread(rows: 1, at: row, into: out)
        }

        private func pread(rows: Int, at row: Int, into out: UnsafeMutableRawPointer) throws {
            let info = engine.shards[shard]
            let bytes = rows * engine.rowBytes
            let offset = info.inputsOffset + row * engine.rowBytes
            var done = 0
            while done < bytes {
                let n = Glibc.pread(fd, out + done, bytes - done, off_t(offset + done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    let why = n == 0 ? "the file ends early (truncated since the dataset was opened)" : String(cString: strerror(errno))
                    throw ParmlError.io("\(info.inputsPath): reading \(bytes) bytes at offset \(offset): \(why)")
                }
                done += n
            }
            // Read once: let the kernel drop these pages now rather than under pressure.
            _ = posix_fadvise(fd, off_t(offset), off_t(bytes), POSIX_FADV_DONTNEED)
        }
    }
}
