#if canImport(Glibc)
import Glibc
#endif
import ParmlModel
import ParmlParallel
import ParmlTensor

/// What the strategy advisor knows of this machine: rates measured here in
/// a few seconds (`MachineCalibration.measure`), kept in a small text file
/// keyed by CPU model, core count and library version (CalibrationCache).
public struct MachineCalibration: Sendable, Equatable {
    public static func == (a: MachineCalibration, b: MachineCalibration) -> Bool {
        CalibrationCache.format(a) == CalibrationCache.format(b)
    }

    /// Which operand a product reads transposed (C = op(A)·op(B), row-major):
    /// a layer's x·Wᵀ runs NT forward, its weight gradient dyᵀ·x TN and its
    /// input gradient dy·W NN. On an AVX2 host (Zen 3) oneDNN ran them up to
    /// 2× apart (1024 × 1024 over 256 rows, one thread: NT 70, NN 38, TN 35
    /// GFLOP/s), so each is calibrated in its own form.
    public enum ProductForm: String, Sendable, CaseIterable {
        case nn, nt, tn
        var transA: Bool { self == .tn }
        var transB: Bool { self == .nt }
    }

    /// sgemm throughput at one shape, form and thread count.
    public struct ProductRate: Sendable, Equatable {
        public var m: Int, n: Int, k: Int, threads: Int
        public var flopsPerSecond: Double
        public var form: ProductForm = .nn
    }
    /// A collective on `ranks` ranks (threads, or MPI processes): t(bytes) = latency + bytes / bandwidth.
    public struct CollectiveRate: Sendable, Equatable {
        public var ranks: Int
        public var latency: Double
        public var bytesPerSecond: Double
        /// MPI processes: the rate past 4 MiB (`largeFrom`), where the
        /// buffers leave the caches; infinity: the same line throughout.
        public var largeBytesPerSecond: Double = .infinity

        /// Where the process rates' second slope begins.
        public static let largeFrom = 4.0 * Double(1 << 20)

        /// Seconds for `bytes`: the line, and past `largeFrom` the second slope.
        public func seconds(bytes: Double) -> Double {
            guard largeBytesPerSecond.isFinite, bytes > Self.largeFrom else { return latency + bytes / bytesPerSecond }
            return latency + Self.largeFrom / bytesPerSecond + (bytes - Self.largeFrom) / largeBytesPerSecond
        }
    }

    public var cpuModel: String
    public var cores: Int
    public var libraryVersion: String
    public var products: [ProductRate] = []
    /// Element-wise kernels (y = a + b over arrays past the caches), bytes moved per second.
    public var elementwiseBytesPerSecond: Double = 0
    /// The same on every core (Kernels.add splits over the worker threads),
    /// as a rank with `cores` threads runs its element-wise work and update; 0: not measured.
    public var elementwiseAllCoresBytesPerSecond: Double = 0
    /// One thread's element-wise rate by working set (bytes of the three
    /// arrays), in its CPU time: in a core's cache, in the shared cache,
    /// past the caches. A small model's activations and update stay in the
    /// caches and run several times faster than the 96 MiB pass.
    public var elementwiseBySize: [(bytes: Double, bytesPerSecond: Double)] = []
    /// The same working sets shared out among `cores` rank threads adding at
    /// once, their rates summed, each in its own CPU time
    /// (`concurrentElementwiseTrial`). What more threads gain depends on
    /// where the data sits: each core's own cache adds up. The 32 MiB
    /// figure on the wall clock, the only one before, had found no gain
    /// and charged two ranks' cache-resident passes one thread's rate
    /// between them: a GPT's tp 2 ranks, which repeat the replicated
    /// layers' element-wise work, were predicted 2.4x its one-rank
    /// element-wise time, where the step measured 1.06x.
    public var elementwiseAllCoresBySize: [(bytes: Double, bytesPerSecond: Double)] = []
    /// Seconds per element of each arithmetic-bound kernel's training
    /// forward and backward on one thread, its arrays in the caches
    /// (`arithmeticRate`).
    public var arithmetic: [ArithmeticKernel: Double] = [:]
    /// All-reduce on the threads backend, per group size measured.
    public var allReduce: [CollectiveRate] = []
    /// A threads-backend send and its receive between two ranks (one way: half a ping-pong).
    public var send: [CollectiveRate] = []
    /// Waking the rank threads for a step and waiting for them (RankPool), per rank count.
    public var handover: [CollectiveRate] = []
    /// MPI processes on this machine, per job (its process count): the
    /// collectives measured inside a job of that size (`measureProcesses`).
    /// Empty until advice for the MPI backend ran in such a job.
    public var processRates: [Int: ProcessRates] = [:]
    /// sgemm throughput of the cores while `threads` rank threads compute at
    /// once (each its own one-thread products on its own 4 MiB weights),
    /// from each thread's CPU time: the caches and memory they share, and
    /// past the cores their turns; not the load other processes put on the
    /// machine (a thread's CPU time leaves out its waits for a core).
    public var concurrency: [(threads: Int, flopsPerSecond: Double)] = []
    /// Seconds the measurement took.
    public var seconds: Double = 0
    /// The machine's 1-minute load average when the measurement began: rates
    /// taken on a busy machine are low, and the cache measures again once
    /// the machine is quieter (CalibrationCache).
    public var loadAverage: Double = 0
    /// Seconds to fault in one 4 KiB page handed back with madvise(DONTNEED)
    /// and zero it: what ZeRO-2/3's released gradient pages cost each step.
    public var pageFaultSeconds: Double = 0
    /// The same when `threads` rank threads of one process fault their own
    /// pages in at once, per page as each rank sees it (the wall time over
    /// its pages): they contend for the process's page tables and, past the
    /// cores, for the cores. ZeRO-2/3 ranks fault in their released gradient
    /// pages at the same point of every step.
    public var concurrentPageFaults: [(threads: Int, seconds: Double)] = []

    public init(cpuModel: String, cores: Int, libraryVersion: String) {
        (self.cpuModel, self.cores, self.libraryVersion) = (cpuModel, cores, libraryVersion)
    }

    /// This machine's key: the CPU as /proc/cpuinfo gives it and the online
    /// cores. Virtual machines show a generic model name ("AMD EPYC" on
    /// hosts with and without AVX-512, whose products measured 2–3× apart),
    /// so the family, model and stepping numbers and the vector extensions
    /// the kernels pick from are part of it.
    public static func currentCPU() -> (model: String, cores: Int) {
        let text = (try? CalibrationCache.read("/proc/cpuinfo")) ?? ""
        return (cpuIdentity(cpuinfo: text), Clock.onlineCores)
    }

    /// The first processor's identity in `/proc/cpuinfo` text: "NAME (family
    /// F model M stepping S; EXTENSIONS)", the parts it lacks left out.
    static func cpuIdentity(cpuinfo text: String) -> String {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingSpaces.isEmpty, !fields.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingSpaces
            if fields[key] == nil { fields[key] = line[line.index(after: colon)...].trimmingSpaces }
        }
        let name = fields["model name"].flatMap { $0.isEmpty ? nil : $0 } ?? "unknown"
        let numbers = [("family", "cpu family"), ("model", "model"), ("stepping", "stepping")]
            .compactMap { label, key in fields[key].map { "\(label) \($0)" } }.joined(separator: " ")
        let flags = Set((fields["flags"] ?? "").split(separator: " ").map(String.init))
        let extensions = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"].filter(flags.contains).joined(separator: " ")
        let details = [numbers, extensions].filter { !$0.isEmpty }.joined(separator: "; ")
        return details.isEmpty ? name : "\(name) (\(details))"
    }

    // MARK: - Rates the cost model reads

    /// Predicted seconds for `p` on `threads` BLAS threads, as BLAS.gemm runs
    /// it: in blocks (`BLAS.productBlocks`: a large product is cut into as
    /// many blocks as cores whatever the rank's threads), each one sgemm
    /// timed at the rate of the measured shapes of the (n, k) nearest the
    /// block's in log space, each side in its own role (C = A·B is m × n
    /// with inner dimension k: a weight gradient of a small piece, 1024 ×
    /// 1024 over 16 rows, streams its output through memory and runs at
    /// half the rate of a forward product of the same sizes), read off the
    /// line through them in log m (clamped at the measured rows). The blocks
    /// run one after another on one thread, or side by side on several at
    /// the gain the concurrent sgemms measured (`slowdown`). Timing a cut
    /// product at the whole product's rate had charged its halves the rate
    /// of twice their rows: a 64-row product cut in two 32-row halves on
    /// one thread ran 0.6 of the predicted time.
    /// `smallKernel`: the product runs on OpenBLAS's small-matrix kernels
    /// (`BLAS.smallMatrixKernel`), so it is timed among the calibrated
    /// products that ran there too (at most 10⁶ multiply-adds, neither operand
    /// transposed): x·Wᵀ of 2 rows over a 512 × 512 weight took 11 µs,
    /// where the 4-row rate of its own, packed family says 27.
    /// `form`: its own form's rates where they were measured, NN's
    /// otherwise; small-matrix kernels at NN's, the form they were measured in.
    public func productSeconds(_ p: MatrixProduct, threads: Int, smallKernel: Bool = false, form: ProductForm = .nn) -> Double {
        guard p.count > 0, p.m > 0, p.n > 0, p.k > 0 else { return 0 }
        let read = smallKernel ? .nn : form
        var single = products.filter { $0.threads == 1 && $0.form == read }
        if single.isEmpty { single = products.filter { $0.threads == 1 && $0.form == .nn } }
        if smallKernel {
            let small = single.filter { BLAS.smallMatrixKernel(transA: false, transB: false, m: $0.m, n: $0.n, k: $0.k) }
            if !small.isEmpty { single = small }
        }
        guard !single.isEmpty else { return p.flops / 1e10 }
        let blocks = BLAS.productBlocks(m: p.m, n: p.n, k: p.k)
        func sides(_ r: ProductRate) -> Double {
            let dn = log(Double(r.n)) - log(Double(blocks.n)), dk = log(Double(r.k)) - log(Double(p.k))
            return dn * dn + dk * dk
        }
        let column = single.min { sides($0) < sides($1) }!
        let family = single.filter { $0.n == column.n && $0.k == column.k }
        // Every block at the largest block's rate: the blocks are equal but for the last.
        var rate = Self.rateAlongRows(family, rows: blocks.m)
        let together = min(threads, blocks.count)
        if together > 1 {
            // Side by side on `together` worker threads: the gain the
            // concurrent sgemms measured (on the wall clock, one product over
            // both cores had measured 2.0x one thread quiet, 0.5-1.6x under load).
            rate *= max(1, Double(together) / slowdown(busyThreads: together))
        }
        return p.flops / rate
    }

    /// The rate at `rows` among measured shapes that differ in rows only:
    /// the line through the two measured row counts around it in log rows
    /// and log rate (128 rows lie halfway between 64 and 256; the nearest
    /// alone made a tie that the list's order broke), the nearest outside them.
    static func rateAlongRows(_ family: [ProductRate], rows: Int) -> Double {
        logLine(family.lazy.map { (x: $0.m, y: $0.flopsPerSecond) }, at: rows) ?? family[0].flopsPerSecond
    }

    /// `rateAlongRows` over (x, rate) points, without building an array
    /// (the advisor reads it thousands of times an advice); nil when empty.
    static func logLine<C: Collection>(_ points: C, at x: Int) -> Double? where C.Element == (x: Int, y: Double) {
        var below: (x: Int, y: Double)?, above: (x: Int, y: Double)?
        for p in points {
            if p.x <= x, below.map({ p.x > $0.x }) ?? true { below = p }
            if p.x >= x, above.map({ p.x < $0.x }) ?? true { above = p }
        }
        switch (below, above) {
        case let (b?, a?) where a.x != b.x:
            let w = (log(Double(x)) - log(Double(b.x))) / (log(Double(a.x)) - log(Double(b.x)))
            return exp((1 - w) * log(b.y) + w * log(a.y))
        case let (b?, _): return b.y
        case let (_, a?): return a.y
        default: return points.first?.y
        }
    }

    /// Seconds to move `bytes` through element-wise kernels, a pass whose
    /// working set is those bytes (or `workingSet`, where other ranks' passes
    /// share the caches): one thread at the rate measured for the
    /// working sets around it (the line through them in log bytes and log
    /// rate; the nearest outside them; past the caches without the sizes),
    /// on more threads scaled by the gain every core measured past the caches.
    public func elementwiseSeconds(bytes: Double, threads: Int = 1, workingSet: Double? = nil) -> Double {
        var rate = elementwiseBytesPerSecond
        if !elementwiseBySize.isEmpty { rate = Self.rate(elementwiseBySize, workingSet: workingSet ?? bytes) }
        if threads > 1 { rate *= allCoresGain(workingSet: workingSet ?? bytes) }
        return bytes / max(rate, 1e8)
    }

    /// Seconds the arithmetic of `kernel` over `elements` (a training
    /// forward and backward) takes past what its traffic costs at the
    /// working set it was timed at, which the element-wise terms charge
    /// already (its layer's input and output forward, twice that backward,
    /// 4 bytes a float): one thread's measured rate, on more threads at the
    /// gain the concurrent sgemms measured (arithmetic, as theirs is). 0
    /// where it was not measured.
    public func arithmeticSeconds(_ kernel: ArithmeticKernel, elements: Double, threads: Int = 1) -> Double {
        guard let perElement = arithmetic[kernel], elements > 0 else { return 0 }
        let traffic = elementwiseSeconds(bytes: 24 * elements, workingSet: Self.arithmeticWorkingSet)
        let alone = max(0, perElement * elements - traffic)
        return threads > 1 ? alone * slowdown(busyThreads: threads) / Double(threads) : alone
    }

    /// The element-wise rate at a working set of `bytes` among rates measured
    /// by working set: the line through the two around it in log bytes and
    /// log rate (`rateAlongRows`, bytes in the rows' place), the nearest outside them.
    static func rate(_ bySize: [(bytes: Double, bytesPerSecond: Double)], workingSet bytes: Double) -> Double {
        logLine(bySize.lazy.map { (x: max(1, Int($0.bytes)), y: $0.bytesPerSecond) }, at: max(1, Int(bytes))) ?? bySize[0].bytesPerSecond
    }

    /// What every core moves together over what one thread moves, for a
    /// working set of `bytes` (the line through the measured sets in log
    /// bytes, the nearest outside them; at least 1): several cores' own
    /// caches add up, the memory's bandwidth may not.
    public func allCoresGain(workingSet bytes: Double) -> Double {
        if !elementwiseAllCoresBySize.isEmpty && !elementwiseBySize.isEmpty {
            return max(1, Self.rate(elementwiseAllCoresBySize, workingSet: bytes) / Self.rate(elementwiseBySize, workingSet: bytes))
        }
        guard elementwiseAllCoresBytesPerSecond > 0 else { return 1 }
        return max(1, elementwiseAllCoresBytesPerSecond / max(elementwiseBytesPerSecond, 1))
    }

    /// Seconds per page for each of `ranks` rank threads of one process
    /// faulting pages in at once: measured at 1 (`pageFaultSeconds`), 2 and
    /// 4 threads, interpolated between, the largest past them.
    public func pageFaultSeconds(concurrent ranks: Int) -> Double {
        let all = ([CollectiveRate(ranks: 1, latency: pageFaultSeconds, bytesPerSecond: .infinity)]
            + concurrentPageFaults.map { CollectiveRate(ranks: $0.threads, latency: $0.seconds, bytesPerSecond: .infinity) })
        return (Self.interpolated(all, ranks: ranks) ?? Self.nearest(all, ranks: ranks)!).latency
    }

    /// The measurement for a group of `ranks`: the measured size itself, or
    /// between two measured sizes the line through them (3 ranks on 2 cores
    /// lie between 2 threads with a core each and 4 time-slicing 2 cores;
    /// the smaller alone would miss the time slicing). Nil outside the
    /// measured sizes (callers scale the nearest, `nearest`).
    static func interpolated(_ rates: [CollectiveRate], ranks: Int) -> CollectiveRate? {
        if let exact = rates.first(where: { $0.ranks == ranks }) { return exact }
        guard let below = rates.filter({ $0.ranks < ranks }).max(by: { $0.ranks < $1.ranks }),
            let above = rates.filter({ $0.ranks > ranks }).min(by: { $0.ranks < $1.ranks })
        else { return nil }
        let w = Double(ranks - below.ranks) / Double(above.ranks - below.ranks)
        let perByte = (1 - w) / below.bytesPerSecond + w / above.bytesPerSecond
        return CollectiveRate(ranks: ranks, latency: (1 - w) * below.latency + w * above.latency, bytesPerSecond: 1 / perByte)
    }

    /// The measured size nearest `ranks` (the largest measured when none is as large).
    static func nearest(_ rates: [CollectiveRate], ranks: Int) -> CollectiveRate? {
        rates.min { abs($0.ranks - ranks) < abs($1.ranks - ranks) }
    }

    // MARK: - Measurement

    /// The (n, k) of the calibrated products, each at `productRows` rows:
    /// narrow and wide outputs over a wide inner dimension (forward and
    /// input-gradient products), and wide outputs over an inner dimension of
    /// 16 and 64 (the weight gradient of a micro-batch of that many rows).
    static let productSides = [(16, 256), (256, 256), (512, 512), (1024, 1024), (1024, 16), (1024, 64)]
    /// Rows of the calibrated products. 4: a pipeline's small pieces (a
    /// batch of 32 in 8 micro-batches) stream the whole weight matrix for a
    /// few rows each, far below the 16-row rate they were charged before.
    /// 8: oneDNN's kernels for few rows run 8 faster a row than the line
    /// from 4 to 16 gives (1024 × 1024: 63 GFLOP/s against 50 and 85).
    static let productRows = [4, 8, 16, 64, 256, 1024]

    /// Floats per array of the calibrated element-wise passes (three arrays
    /// each): within a core's cache, within the shared cache, past it.
    /// Points at 12.6 and 50 MB, either side of this machine's cache edge,
    /// fitted the curve better but lowered the CNN's ranking (bench/advisor.md).
    static let elementwiseFloats = [16 << 10, 256 << 10, 8 << 20]

    /// Measures this machine (about 2–5 s on 2 cores): sgemm on 36 shapes in
    /// each of 3 forms (`ProductForm`) on one thread, and on 1, 2 and 4 rank
    /// threads at once, y = a + b over 32 MiB arrays and over `elementwiseFloats`,
    /// each arithmetic-bound kernel's layer (`arithmeticRate`), threads-backend all-reduce on 2
    /// and 4 ranks at 4 KiB and 4 MiB, a send between two ranks at the same
    /// sizes, and the thread hand-over of an empty step. Each figure is the
    /// best of a few runs (the machine may be shared).
    public static func measure(libraryVersion: String) throws -> MachineCalibration {
        try BLAS.ensureLoaded()
        let start = Clock.now()
        let cpu = currentCPU()
        var c = MachineCalibration(cpuModel: cpu.model, cores: cpu.cores, libraryVersion: libraryVersion)
        c.loadAverage = currentLoadAverage() ?? 0
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        BLAS.threads = 1
        for form in ProductForm.allCases {
            for m in productRows {
                for (n, k) in productSides {
                    c.products.append(
                        ProductRate(m: m, n: n, k: k, threads: 1, flopsPerSecond: try gemmRate(m: m, n: n, k: k, form: form), form: form))
                }
            }
        }
        BLAS.threads = 1
        let counts = [1, 2, 4]
        let perFlop = try interleavedBest(rounds: 3, try counts.map { try concurrentTrial(threads: $0, cores: cpu.cores) })
        for (k, t) in zip(counts, perFlop) { c.concurrency.append((k, 1 / max(t, 1e-18))) }
        c.elementwiseBytesPerSecond = try elementwiseRate()
        for kernel in ArithmeticKernel.allCases { c.arithmetic[kernel] = try arithmeticRate(kernel) }
        for floats in elementwiseFloats {
            c.elementwiseBySize.append((Double(3 * floats * 4), try elementwiseRate(floats: floats)))
        }
        if cpu.cores > 1 {
            BLAS.threads = cpu.cores
            c.elementwiseAllCoresBytesPerSecond = try elementwiseRate()
            BLAS.threads = 1
            for floats in elementwiseFloats {
                let trial = try concurrentElementwiseTrial(threads: cpu.cores, floats: floats)
                c.elementwiseAllCoresBySize.append((Double(3 * floats * 4), 1 / max(try interleavedBest(rounds: 4, [trial])[0], 1e-18)))
            }
        }
        let perPage = try interleavedBest(rounds: 5, try counts.map { try pageFaultTrial(threads: $0) })
        c.pageFaultSeconds = perPage[0]
        for (k, t) in zip(counts, perPage).dropFirst() { c.concurrentPageFaults.append((k, t)) }
        for ranks in [2, 4] {
            c.allReduce.append(try allReduceRate(ranks: ranks))
            c.handover.append(try handoverCost(ranks: ranks))
        }
        c.send.append(try sendRate())
        c.seconds = Clock.now() - start
        return c
    }

    /// Best sgemm rate of a few runs of op(A)·op(B) (m×k times k×n, in
    /// `form`) on one thread, repeated to ~10 ms, in the thread's CPU time:
    /// what the core does while the job has it, whatever else the machine
    /// runs meanwhile.
    private static func gemmRate(m: Int, n: Int, k: Int, form: ProductForm) throws -> Double {
        let a = try Tensor(shape: Shape(m, k)), b = try Tensor(shape: Shape(k, n)), y = try Tensor(shape: Shape(m, n))
        // op(A) is m × k and op(B) k × n; a transposed operand is stored the other way round.
        let (lda, ldb) = (form.transA ? m : k, form.transB ? k : n)
        a.fill(0.5)
        b.fill(0.25)
        let flops = 2 * Double(m) * Double(n) * Double(k)
        let reps = max(1, Int(1e7 / flops * 4))  // ~10 ms at 4 GFLOP/s, less on a fast core
        var best = Double.infinity
        for _ in 0..<3 {
            let t = Clock.threadCPU()
            for _ in 0..<reps {
                BLAS.gemmOneBlock(
                    transA: form.transA, transB: form.transB, m: m, n: n, k: k, a.data, lda: lda, b.data, ldb: ldb, beta: 0, y.data, ldc: n)
            }
            best = min(best, (Clock.threadCPU() - t) / Double(reps))
        }
        return flops / max(best, 1e-12)
    }

    /// Rows and features of the layer `arithmeticRate` times: 64 K elements,
    /// whose input, output and gradients stay in the caches.
    static let arithmeticShape = (rows: 256, features: 256)
    /// Bytes of those arrays: x, y, GELU's saved derivative, dy and dx.
    static let arithmeticWorkingSet = Double(5 * 4 * arithmeticShape.rows * arithmeticShape.features)

    /// Seconds per element of `kernel`'s layer on one thread: a training
    /// forward and a backward with the input gradient, 8 times, the best of
    /// 3 rounds in the thread's CPU time (2–6 ms a kernel). Inputs spread
    /// over [-4, 4] (GELU's far branch is taken past |x| = 3.5).
    private static func arithmeticRate(_ kernel: ArithmeticKernel) throws -> Double {
        let (rows, features) = arithmeticShape
        // In a model of its own: its parameters (LayerNorm's γ, β) bound to an arena.
        let model = Model()
        try model.add(try kernel.makeLayer(features: features))
        try model.initialize(seed: 1)
        let layer = model.root.layers[0]
        let x = try Tensor(shape: Shape(rows, features)), dy = try Tensor(shape: Shape(rows, features))
        for i in 0..<x.count {
            x.data[i] = Float(i % 97) / 12 - 4
            dy.data[i] = Float(i % 13) / 13 - 0.5
        }
        var ctx = PassContext(training: true)
        ctx.threads = 1
        let reps = 8
        var best = Double.infinity
        for _ in 0..<3 {
            let t = Clock.threadCPU()
            for _ in 0..<reps {
                _ = try layer.forward(x, ctx)
                _ = try layer.backward(dy, ctx, needInputGradient: true, accumulate: false)
            }
            best = min(best, (Clock.threadCPU() - t) / Double(reps))
        }
        return best / Double(x.count)
    }

    /// Runs each trial once per round, the trials in turn (1, 2, 4 threads,
    /// 1, 2, 4, ...), and keeps each one's least: a load that comes and goes
    /// while the calibration runs hits every thread count alike, so their
    /// ratios (what the cost model reads) do not depend on which one ran
    /// while another process was busy.
    private static func interleavedBest(rounds: Int, _ trials: [() throws -> Double]) throws -> [Double] {
        var best = [Double](repeating: .infinity, count: trials.count)
        for _ in 0..<rounds {
            for (i, trial) in trials.enumerated() { best[i] = min(best[i], try trial()) }
        }
        return best
    }

    /// One run of `threads` rank threads at once, each running 8 of its own
    /// 128×1024×1024 sgemms on one BLAS thread (a rank's own 4 MiB weights:
    /// ranks that compute at once share the caches and the memory, which
    /// the 256 KiB operands measured before never left a core's cache for),
    /// each timed in its own CPU time: seconds per floating-point operation
    /// of the cores while `threads` compute, min(threads, cores) of them at
    /// once (past the cores the threads take turns, which the slowdown
    /// counts; other processes' load is in neither).
    private static func concurrentTrial(threads k: Int, cores: Int) throws -> () throws -> Double {
        let (m, n, kk) = (128, 1024, 1024)
        let a = try (0..<k).map { _ in try Tensor(shape: Shape(m, kk)) }, b = try (0..<k).map { _ in try Tensor(shape: Shape(kk, n)) }
        let y = try (0..<k).map { _ in try Tensor(shape: Shape(m, n)) }
        for t in a + b { t.fill(0.5) }
        let reps = 8
        let pool = k > 1 ? try RankPool(size: k) : nil
        let cpu = PerRank(k)
        let body: (Int) throws -> Void = { r in
            let t = Clock.threadCPU()
            for _ in 0..<reps {
                BLAS.gemm(transA: false, transB: false, m: m, n: n, k: kk, a[r].data, lda: kk, b[r].data, ldb: n, beta: 0, y[r].data, ldc: n)
            }
            cpu.values[r] = Clock.threadCPU() - t
        }
        let flops = Double(reps) * 2 * Double(m * n * kk)
        return {
            if let pool { try pool.run(world: nil, body) } else { try body(0) }
            let perThread = (0..<k).reduce(0.0) { $0 + cpu.values[$1] } / Double(k) / flops
            return perThread / Double(min(k, max(cores, 1)))
        }
    }

    /// How much slower each of `busy` threads computes than one thread alone
    /// (≥ 1 when they share cores): from the measured concurrency, the
    /// nearest measured count; past the largest, shared out further.
    /// Threads past the cores take turns on them, so together they compute
    /// no faster than the cores' worth did: a calibration taken while
    /// something slowed its 2-thread trial had measured 4 threads on 2
    /// cores 4 % faster than 2, and the advisor then put 4 ranks first in
    /// 11 of 14 scenarios, 3 of them 12–18 % slower than the fastest layout.
    /// A thread alone computes at least as fast as each of several that
    /// share the cores: a one-thread trial slower than that was slowed by
    /// something else (the other tenant of a core's siblings), and is read
    /// as that rate. Two calibrations had timed one thread 3–7 % below each
    /// of two, which made 4 threads on 2 cores 1.88–1.94× one instead of
    /// 2×, and the advisor put 4-rank layouts first where they were 12–25 %
    /// slower than the fastest (bench/advisor.md, 2026-12-06 20:15, 20:38).
    public func slowdown(busyThreads busy: Int) -> Double {
        guard var one = concurrency.first(where: { $0.threads == 1 })?.flopsPerSecond, one > 0,
            let near = concurrency.min(by: { abs($0.threads - busy) < abs($1.threads - busy) })
        else { return 1 }
        for c in concurrency where c.threads > 1 && c.threads <= cores { one = max(one, c.flopsPerSecond / Double(c.threads)) }
        var rate = near.threads == 1 ? one : near.flopsPerSecond
        if near.threads > cores, let full = concurrency.filter({ $0.threads <= cores }).max(by: { $0.threads < $1.threads }) {
            rate = min(rate, full.flopsPerSecond)
        }
        let perThread = rate / Double(max(busy, near.threads))
        return max(1, one / perThread)
    }

    /// One thread's y = a + b over `n` floats, repeated to ~1 ms, in its
    /// CPU time: bytes per second, best of 4.
    private static func elementwiseRate(floats n: Int) throws -> Double {
        let a = try Tensor(shape: Shape(n)), b = try Tensor(shape: Shape(n)), y = try Tensor(shape: Shape(n))
        a.fill(1)
        b.fill(2)
        y.fill(0)
        let reps = max(1, (1 << 20) / n * 4)
        var best = Double.infinity
        for _ in 0..<4 {
            let t = Clock.threadCPU()
            for _ in 0..<reps { Kernels.add(a.data, b.data, y.data, count: n) }
            best = min(best, (Clock.threadCPU() - t) / Double(reps))
        }
        return Double(3 * n * 4) / max(best, 1e-9)
    }

    private static func elementwiseRate() throws -> Double {
        let n = 8 << 20
        let a = try Tensor(shape: Shape(n)), b = try Tensor(shape: Shape(n)), y = try Tensor(shape: Shape(n))
        a.fill(1)
        b.fill(2)
        y.fill(0)
        var best = Double.infinity
        for _ in 0..<4 {
            let t = Clock.now()
            Kernels.add(a.data, b.data, y.data, count: n)
            best = min(best, Clock.now() - t)
        }
        return Double(3 * n * 4) / max(best, 1e-9)
    }

    /// The 1-minute load average (getloadavg), nil where the system has none.
    public static func currentLoadAverage() -> Double? {
        var load = [0.0]
        return getloadavg(&load, 1) == 1 ? load[0] : nil
    }

    /// One run of `threads` rank threads at once, each adding its own share
    /// of `floats` (y = a + b on one thread, repeated), each timed in its own
    /// CPU time: bytes per second of the threads together, for a working set
    /// of the three arrays of `floats` shared out among them, as the threads
    /// split a rank's element-wise pass or ranks run theirs side by side.
    /// CPU time, as the concurrent sgemms: a shared machine's waits for a
    /// core drop out (the wall clock had measured 2 cores at 0.9x and at 2.2x
    /// one on the same 96 MiB a minute apart).
    private static func concurrentElementwiseTrial(threads k: Int, floats: Int) throws -> () throws -> Double {
        let n = max(16, floats / k)
        let arrays = try (0..<(3 * k)).map { _ in try Tensor(shape: Shape(n)) }
        for t in arrays { t.fill(1) }
        let reps = max(1, (1 << 20) / n * 4)
        let pool = k > 1 ? try RankPool(size: k) : nil
        let cpu = PerRank(k)
        let body: (Int) throws -> Void = { r in
            let (a, b, y) = (arrays[3 * r].data, arrays[3 * r + 1].data, arrays[3 * r + 2].data)
            let t = Clock.threadCPU()
            for _ in 0..<reps { Kernels.add(a, b, y, count: n) }
            cpu.values[r] = Clock.threadCPU() - t
        }
        let bytes = Double(reps * 3 * n * 4)
        return {
            if let pool { try pool.run(world: nil, body) } else { try body(0) }
            // The threads together: each one's rate, summed (returned as seconds per byte, least is best).
            return 1 / (0..<k).reduce(0.0) { $0 + bytes / max(cpu.values[$1], 1e-9) }
        }
    }

    /// One figure per rank thread, each written by its own rank only.
    private final class PerRank: @unchecked Sendable {
        let values: UnsafeMutablePointer<Double>
        init(_ count: Int) {
            values = .allocate(capacity: count)
            values.initialize(repeating: 0, count: count)
        }
        deinit { values.deallocate() }
    }

    /// 8 MiB per rank thread, mapped for the page-fault trials and unmapped with the last.
    private final class PageBlock: @unchecked Sendable {
        static let pages = 2048, page = 4096
        let base: Int, threads: Int
        init(threads k: Int) throws {
            let bytes = k * Self.pages * Self.page
            guard let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
                throw ParmlError.outOfMemory("cannot map \(bytes) bytes to time page faults")
            }
            (base, threads) = (Int(bitPattern: raw), k)
            let p = raw.assumingMemoryBound(to: UInt8.self)
            for i in 0..<(k * Self.pages) { p[i * Self.page] = 1 }
        }
        deinit { munmap(UnsafeMutableRawPointer(bitPattern: base), threads * Self.pages * Self.page) }
    }

    /// One run of `threads` rank threads each handing its 8 MiB of touched
    /// pages back (madvise DONTNEED, as Pages.release does) and writing one
    /// float into each again, all at once: seconds per page as one rank sees it.
    private static func pageFaultTrial(threads k: Int) throws -> () throws -> Double {
        let block = try PageBlock(threads: k)
        let pool = k > 1 ? try RankPool(size: k) : nil
        let (pages, page) = (PageBlock.pages, PageBlock.page)
        let body: (Int) throws -> Void = { r in
            let mine = UnsafeMutablePointer<UInt8>(bitPattern: block.base + r * pages * page)!
            madvise(mine, pages * page, MADV_DONTNEED)
            for i in 0..<pages { mine[i * page] = 1 }
        }
        return {
            let t = Clock.now()
            if let pool { try pool.run(world: nil, body) } else { try body(0) }
            return (Clock.now() - t) / Double(pages)
        }
    }

    /// Two sizes of all-reduce on `ranks` threads: the line through them.
    private static func allReduceRate(ranks: Int) throws -> CollectiveRate {
        try lineThroughTwoSizes(ranks: ranks, operations: 1) { comm, r, buffer, count in
            try comm.allReduce(buffer, count: count, op: .sum)
        }
    }

    /// Ping-pong between two rank threads: one way is half a round trip.
    private static func sendRate() throws -> CollectiveRate {
        try lineThroughTwoSizes(ranks: 2, operations: 2) { comm, r, buffer, count in
            if r == 0 {
                try comm.send(buffer, count: count, to: 1)
                try comm.receive(buffer, count: count, from: 1)
            } else {
                try comm.receive(buffer, count: count, from: 0)
                try comm.send(buffer, count: count, to: 0)
            }
        }
    }

    /// Times `exchange` (which makes `operations` transfers) on `ranks`
    /// threads at 4 KiB (50 times) and 4 MiB (4 times), best of 5 runs each,
    /// and returns latency and bandwidth of the line through the two sizes.
    private static func lineThroughTwoSizes(
        ranks: Int, operations: Int,
        _ exchange: @escaping (Communicator, Int, UnsafeMutablePointer<Float>, Int) throws -> Void
    ) throws -> CollectiveRate {
        let small = 1 << 10, large = 1 << 20
        let world = try ThreadsWorld(size: ranks, timeout: 30, name: "calibration")
        let pool = try RankPool(size: ranks)
        let buffers = try (0..<ranks).map { _ in try Tensor(shape: Shape(large)) }
        for b in buffers { b.fill(1) }
        func time(_ count: Int, reps: Int) throws -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                let t = Clock.now()
                try pool.run(world: world) { r in
                    let comm = world.communicator(rank: r)
                    for _ in 0..<reps { try exchange(comm, r, buffers[r].data, count) }
                }
                best = min(best, (Clock.now() - t) / Double(reps * operations))
            }
            return best
        }
        let ts = try time(small, reps: 50), tl = try time(large, reps: 4)
        let slope = max((tl - ts) / Double((large - small) * 4), 1e-12)
        return CollectiveRate(ranks: ranks, latency: max(ts - Double(small * 4) * slope, 0), bytesPerSecond: 1 / slope)
    }

    /// An empty step's cost on `ranks` rank threads (wake, run nothing, join).
    private static func handoverCost(ranks: Int) throws -> CollectiveRate {
        let pool = try RankPool(size: ranks)
        var best = Double.infinity
        for _ in 0..<5 {
            let t = Clock.now()
            for _ in 0..<50 { try pool.run(world: nil) { _ in } }
            best = min(best, (Clock.now() - t) / 50)
        }
        return CollectiveRate(ranks: ranks, latency: best, bytesPerSecond: .infinity)
    }
}

extension Substring {
    var trimmingSpaces: String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
