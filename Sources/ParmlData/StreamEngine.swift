#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

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
    /// The reader's chunk of rows (StreamEngine+Reader.swift).
    let chunk: UnsafeMutableRawPointer

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
}
