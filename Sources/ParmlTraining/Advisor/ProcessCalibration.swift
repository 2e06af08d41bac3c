import ParmlParallel
import ParmlTensor

// The MPI backend's collectives cannot be measured from one process: they
// are measured inside the job that asks for advice, every process taking
// part, and kept in the calibration file beside the in-process figures.

/// What a job of MPI processes measured of its collectives (`measureProcesses`).
public struct ProcessRates: Sendable {
    /// The largest size measured, in floats (32 MiB).
    static let largestFloats = 8 << 20
    /// Per group size dividing the job, every such group of the job at once
    /// (a dp × tp layout's groups do): all-reduce; broadcast from the
    /// group's first rank (how a replica of pp or tp > 1 assembles its host
    /// model after each step, HostModelAssembly); all-gather (bytes: the
    /// whole gathered buffer, every rank its share; ZeRO's parameter gathers).
    public var allReduce: [MachineCalibration.CollectiveRate] = []
    public var broadcast: [MachineCalibration.CollectiveRate] = []
    public var allGather: [MachineCalibration.CollectiveRate] = []
    /// A send between neighbours (ranks 2i and 2i + 1, every pair at once).
    public var send: MachineCalibration.CollectiveRate?

    /// Whether every collective was measured for groups of the whole job of `processes`.
    func complete(job processes: Int) -> Bool {
        send != nil && [allReduce, broadcast, allGather].allSatisfy { $0.contains { $0.ranks == processes } }
    }
}

extension MachineCalibration {
    /// Measures the collectives of the job `world` spans (every process
    /// calls it, in the same order as the job's other collectives): for each
    /// group size g ≥ 2 dividing the job, all its groups of g consecutive
    /// ranks all-reducing at once; and every pair (2i, 2i + 1) exchanging
    /// sends at once (a pipeline's neighbours), and the groups' broadcasts
    /// from their first rank and all-gathers (`ratesAtThreeSizes`). The
    /// figures are this process's; callers keep rank 0's.
    public static func measureProcesses(
        world: Communicator
    ) throws -> ProcessRates {
        let n = world.size, r = world.rank
        var rates = ProcessRates()
        guard n > 1 else { return rates }
        let buffer = try Tensor(shape: Shape(ProcessRates.largestFloats))
        buffer.fill(1)
        for g in 2...n where n % g == 0 {
            let group = g == n ? world : try world.split(color: r / g, key: r % g, name: "calibration(\(g))")
            rates.allReduce.append(
                try ratesAtThreeSizes(world: world, ranks: g, operations: 1) { count in
                    try group.allReduce(buffer.data, count: count, op: .sum)
                })
            rates.broadcast.append(
                try ratesAtThreeSizes(world: world, ranks: g, operations: 1) { count in
                    try group.broadcast(buffer.data, count: count, root: 0)
                })
            rates.allGather.append(
                try ratesAtThreeSizes(world: world, ranks: g, operations: 1) { count in
                    try group.allGather(buffer.data, count: count)
                })
        }
        let partner = r % 2 == 0 ? r + 1 : r - 1
        rates.send = try ratesAtThreeSizes(world: world, ranks: 2, operations: 2) { count in
            guard partner < n else { return }  // the odd rank out of an odd job waits at the next barrier
            if r % 2 == 0 {
                try world.send(buffer.data, count: count, to: partner)
                try world.receive(buffer.data, count: count, from: partner)
            } else {
                try world.receive(buffer.data, count: count, from: partner)
                try world.send(buffer.data, count: count, to: partner)
            }
        }
        return rates
    }

    /// Times `exchange` (which makes `operations` transfers) at 4 KiB (50
    /// times), 4 MiB (4 times) and 32 MiB (twice), best of 5 runs each,
    /// each run started together at a barrier of `world`: latency and
    /// bandwidth of the line through the first two sizes, and the bandwidth
    /// from 4 to 32 MiB, where the buffers leave the caches (2 processes
    /// here: 8.4 GB/s along the line, 3.6 GB/s past it).
    private static func ratesAtThreeSizes(
        world: Communicator, ranks: Int, operations: Int, _ exchange: (Int) throws -> Void
    ) throws -> CollectiveRate {
        let small = 1 << 10, large = 1 << 20, past = ProcessRates.largestFloats
        func time(_ count: Int, reps: Int) throws -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                try world.barrier()
                let t = Clock.now()
                for _ in 0..<reps { try exchange(count) }
                best = min(best, (Clock.now() - t) / Double(reps * operations))
            }
            return best
        }
        let ts = try time(small, reps: 50), tl = try time(large, reps: 4), tp = try time(past, reps: 2)
        let slope = max((tl - ts) / Double((large - small) * 4), 1e-12)
        let beyond = max((tp - tl) / Double((past - large) * 4), 1e-12)
        return CollectiveRate(
            ranks: ranks, latency: max(ts - Double(small * 4) * slope, 0), bytesPerSecond: 1 / slope, largeBytesPerSecond: 1 / beyond)
    }

    /// The cores the job's processes may run on together: the union of
    /// their affinity masks (mpirun binds the processes of a job of 1 or 2
    /// to a core each). Every process calls it.
    public static func jobCores(world: Communicator) throws -> Int {
        let online = Clock.onlineCores
        var mask = (WorkerPool.allowedCPUs(online) ?? Array(repeating: true, count: online)).map { $0 ? Float(1) : 0 }
        try world.allReduce(&mask, count: online, op: .sum)
        return max(1, mask.filter { $0 > 0 }.count)
    }

    /// Whether this calibration holds a job of `processes` processes' collectives.
    public func hasProcessRates(job processes: Int) -> Bool {
        processes <= 1 || processRates[processes]?.complete(job: processes) == true
    }
}

extension CalibrationCache {
    /// The calibration for a job of processes on this machine, the same on
    /// every process (every process calls it): rank 0 loads or measures the
    /// in-process figures alone (the others wait, so that nothing else
    /// computes while it measures), the job measures its collectives
    /// together when the file lacks them (rank 0 stores them), and rank 0's
    /// calibration goes to every process as the file's text. An error on
    /// rank 0 reaches every process.
    public static func loadShared(directory: String?, libraryVersion: String, world: Communicator) throws -> (MachineCalibration, Origin) {
        let origins: [Origin] = [.cached, .measured, .replaced, .remeasuredQuieter]
        var mine: (MachineCalibration, Origin)?
        var failure = ""
        if world.rank == 0 {
            // Any error, so that the others hear of it rather than wait for the watchdog.
            do { mine = try load(directory: directory, libraryVersion: libraryVersion) } catch let e as ParmlError {
                failure = e.message
            } catch {
                failure = "\(error)"
            }
        }
        // [failed, origin, needs the job's collectives]
        var head: [Float] = [0, 0, 0]
        if let (c, origin) = mine {
            head = [0, Float(origins.firstIndex(of: origin)!), c.hasProcessRates(job: world.size) ? 0 : 1]
        } else if world.rank == 0 {
            head[0] = 1
        }
        try world.broadcast(&head, count: 3, root: 0)
        if head[0] != 0 {
            let why = try broadcastText(failure, world: world)
            throw ParmlError.state("advise: rank 0 could not calibrate this machine: \(why)")
        }
        var origin = origins[Int(head[1])]
        if head[2] != 0 {
            let rates = try MachineCalibration.measureProcesses(world: world)
            if world.rank == 0, var c = mine?.0 {
                c.processRates[world.size] = rates
                if let dir = directory ?? defaultDirectory() { try? store(c, directory: dir, path: dir + "/" + fileName) }
                mine = (c, origin)
            }
            if origin == .cached { origin = .measured }
        }
        let text = try broadcastText(mine.map { format($0.0) } ?? "", world: world)
        guard let c = parse(text) else { throw ParmlError.state("advise: rank 0's calibration did not parse on rank \(world.rank)") }
        return (c, origin)
    }

    /// Rank 0's `text` on every rank: its length, then its UTF-8 bytes one
    /// per float (exact below 2^24; a calibration is a few KiB).
    static func broadcastText(_ text: String, world: Communicator) throws -> String {
        var bytes = Array(text.utf8)
        var length: [Float] = [Float(bytes.count)]
        try world.broadcast(&length, count: 1, root: 0)
        let n = Int(length[0])
        var floats = world.rank == 0 ? bytes.map { Float($0) } : [Float](repeating: 0, count: n)
        if n > 0 { try world.broadcast(&floats, count: n, root: 0) }
        bytes = floats.map { UInt8(clamping: Int($0)) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
