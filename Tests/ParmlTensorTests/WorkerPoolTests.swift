import Glibc
import Synchronization
import Testing
import _CParmlDNNL
import _CParmlKernels
import _ParmlTestSupport

@testable import ParmlTensor

/// Counts per part, from any thread.
private final class Tally: Sendable {
    let counts: Mutex<[Int]>
    let inner = Atomic<Int>(0)
    let lows = Mutex<[Int]>([])
    init(parts: Int) { counts = Mutex([Int](repeating: 0, count: parts)) }
}

/// Counts its part, then asks the pool again (nested: runs 2 parts itself).
private struct CountParts: WorkerTask {
    let tally: Tally
    func run(part p: Int) {
        tally.counts.withLock { $0[p] += 1 }
        WorkerPool.run(parts: 2, CountInner(tally: tally))
    }
}

private struct CountInner: WorkerTask {
    let tally: Tally
    func run(part: Int) { tally.inner.add(1, ordering: .relaxed) }
}

/// Which thread ran each part.
private final class ThreadLog: Sendable {
    let threads: Mutex<[pthread_t?]>
    init(parts: Int) { threads = Mutex([pthread_t?](repeating: nil, count: parts)) }
}

/// Records its thread, then holds the part 2 ms: long enough for an idle
/// worker to take some of the others.
private struct RecordThreads: WorkerTask {
    let log: ThreadLog
    func run(part p: Int) {
        let me = pthread_self()
        log.threads.withLock { $0[p] = me }
        usleep(2000)
    }
}

/// Marks every index of its range and records the range's start.
private struct MarkRanges: RangeTask {
    let tally: Tally
    let marks: UnsafeMutablePointer<Int>
    func run(_ r: Range<Int>, part: Int) {
        tally.lows.withLock { $0.append(r.lowerBound) }
        for i in r { marks[i] += 1 }
    }
}

/// The pool itself (pml_pool.c through WorkerPool) and the claim every split
/// rests on: a product split into blocks of rows or columns of C, or an
/// element-wise loop split into ranges, gives the unsplit bits.
@Suite(.serialized) struct WorkerPoolTests {
    init() throws { try BLAS.ensureLoaded() }

    /// Runs `body` with the pool at `threads`, then puts the count back.
    private func withThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
        let saved = BLAS.threads
        BLAS.threads = threads
        defer { BLAS.threads = saved }
        return try body()
    }

    @Test func everyPartRunsOnce() {
        withThreads(3) {
            #expect(WorkerPool.setThreads(3) == 3)
            for parts in [1, 2, 3, 7, 100] {
                let tally = Tally(parts: parts)
                WorkerPool.run(parts: parts, CountParts(tally: tally))
                #expect(tally.counts.withLock { $0 }.allSatisfy { $0 == 1 }, "\(parts) parts")
                #expect(tally.inner.load(ordering: .relaxed) == 2 * parts)
            }
        }
    }

    /// `BLAS.asOneOff` (the advisor's probe): inside it, this thread's jobs
    /// run every part on this thread and its products skip oneDNN's route
    /// (no plan compiled for shapes seen once); both settings come back as
    /// they were after it, nested or not, and a large product inside it
    /// still computes op(A)·op(B).
    @Test func oneOffWorkStaysOnTheCallingThread() {
        func bypassed() -> Int32 {
            let was = pml_dnnl_sgemm_bypass_on_this_thread(1)
            pml_dnnl_sgemm_bypass_on_this_thread(was)
            return was
        }
        func kept() -> Int32 {
            let was = pml_pool_keep_on_this_thread(1)
            pml_pool_keep_on_this_thread(was)
            return was
        }
        withThreads(2) {
            #expect(bypassed() == 0 && kept() == 0)
            let me = pthread_self()
            let (m, n, k) = (192, 160, 256)
            let a = randomArray(m * k, seed: 5, stream: 1), b = randomArray(k * n, seed: 5, stream: 2)
            var c = [Float](repeating: 0, count: m * n)
            BLAS.asOneOff {
                #expect(bypassed() == 1 && kept() == 1)
                let log = ThreadLog(parts: 8)
                WorkerPool.run(parts: 8, RecordThreads(log: log))
                #expect(log.threads.withLock { $0 }.allSatisfy { $0.map { pthread_equal($0, me) != 0 } ?? false })
                BLAS.asOneOff { #expect(bypassed() == 1 && kept() == 1) }
                #expect(bypassed() == 1 && kept() == 1, "a nested one-off put the settings back too early")
                c.withUnsafeMutableBufferPointer { pc in
                    BLAS.gemm(transA: false, transB: false, m: m, n: n, k: k, a, lda: k, b, ldb: n, beta: 0, pc.baseAddress!, ldc: n)
                }
            }
            #expect(bypassed() == 0 && kept() == 0)
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0, absSum = 0.0
                    for p in 0..<k {
                        sum += Double(a[i * k + p]) * Double(b[p * n + j])
                        absSum += abs(Double(a[i * k + p]) * Double(b[p * n + j]))
                    }
                    worst = max(worst, abs(Double(c[i * n + j]) - sum) / absSum)
                }
            }
            #expect(worst <= 1e-5, "max error relative to Σ|a·b|: \(worst)")
        }
    }

    /// Two callers at once: one gets the pool, the other runs its parts itself.
    @Test func concurrentCallersEachRunTheirParts() async {
        BLAS.threads = 2
        defer { BLAS.threads = 1 }
        let tally = Tally(parts: 5)
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<4 {
                g.addTask {
                    for _ in 0..<200 { WorkerPool.run(parts: 5, CountInner(tally: tally)) }
                }
            }
        }
        #expect(tally.inner.load(ordering: .relaxed) == 4 * 200 * 5)
    }

    /// Coverage and alignment hold at any thread count; the number of parts
    /// is checked on the pure rule, since a trainer in another suite may
    /// resize the process's pool while this runs.
    @Test func rangesCoverTheCountOnceAlignedTo16() {
        withThreads(2) {
            for count in [0, 1, 100, 40_000, 65_537] {
                var covered = [Int](repeating: 0, count: count)
                let tally = Tally(parts: 0)
                covered.withUnsafeMutableBufferPointer { c in
                    WorkerPool.forRanges(count: count, grain: 16_384, MarkRanges(tally: tally, marks: c.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!))
                }
                #expect(covered.allSatisfy { $0 == 1 }, "count \(count)")
                let parts = tally.lows.withLock { $0 }
                #expect(parts.allSatisfy { $0 % 16 == 0 }, "count \(count): \(parts)")
                #expect(Set(parts).count == parts.count && parts.count <= max(1, count / 16_384), "count \(count): \(parts)")
                #expect(WorkerPool.partLimit(count: count, grain: 16_384, threads: 2) == (count >= 2 * 16_384 ? 2 : 1), "count \(count)")
            }
        }
        #expect(WorkerPool.partLimit(count: 100_000, grain: 16_384, threads: 8) == 6)
        #expect(WorkerPool.partLimit(count: 100_000, grain: 0, threads: 3) == 3)
    }

    /// The engine's shapes (the MLP's and the GPT's products, both
    /// transposes of each operand) on 2 and 3 threads against one: the
    /// blocks are the same, whoever runs them.
    @Test func productsGiveTheSameBitsOnAnyThreadCount() {
        let shapes = [(512, 1024, 784), (1024, 784, 512), (512, 10, 1024), (768, 384, 128), (384, 128, 768), (128, 768, 512), (100, 333, 129)]
        for (m, n, k) in shapes {
            for trans in 0..<4 {
                let ta = trans & 1 == 1, tb = trans & 2 == 2
                let a = randomArray(m * k, seed: UInt64(m + k), stream: 1)
                let b = randomArray(k * n, seed: UInt64(n + k), stream: 2)
                let c0 = randomArray(m * n, seed: UInt64(m + n), stream: 3)
                func product(_ threads: Int) -> [Float] {
                    withThreads(threads) {
                        #expect(ProductThreads.blockCount(m: m, n: n, k: k) == ProductThreads.blocks, "\(m)x\(n)x\(k)")
                        var c = c0
                        a.withUnsafeBufferPointer { pa in
                            b.withUnsafeBufferPointer { pb in
                                c.withUnsafeMutableBufferPointer { pc in
                                    BLAS.gemm(
                                        transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, pa.baseAddress!, lda: ta ? m : k, pb.baseAddress!,
                                        ldb: tb ? k : n, beta: 0.25, pc.baseAddress!, ldc: n)
                                }
                            }
                        }
                        return c
                    }
                }
                let whole = product(1)
                for threads in [2, 3] {
                    let split = product(threads)
                    let differ = zip(whole, split).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(differ == 0, "\(m)x\(n)x\(k) transA \(ta) transB \(tb), \(threads) threads: \(differ) elements differ")
                }
            }
        }
    }

    /// Which way a product is cut: by rows where B is the smaller operand
    /// or each block keeps 128 rows (so the MLP's forward x·Wᵀ at batch 512
    /// runs its blocks on oneDNN, not as columns times a transposed B on
    /// OpenBLAS), else by columns; and such a product, cut by rows, equals
    /// the naive sum over all of k.
    @Test func largeProductsAreCutByRowsWhereEachBlockKeeps128() throws {
        #expect(ProductCut(m: 512, n: 1024, parts: 2).byRows)
        #expect(ProductCut(m: 256, n: 2048, parts: 2).byRows)
        #expect(!ProductCut(m: 255, n: 2048, parts: 2).byRows)
        #expect(!ProductCut(m: 64, n: 512, parts: 2).byRows)
        #expect(!ProductCut(m: 448, n: 1024, parts: 4).byRows)
        #expect(ProductCut(m: 768, n: 384, parts: 4).byRows)
        let (m, n, k) = (512, 1024, 96)
        let a = randomArray(m * k, seed: 5, stream: 1), b = randomArray(n * k, seed: 6, stream: 2)
        var c = [Float](repeating: 0, count: m * n)
        withThreads(2) {
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        // x·Wᵀ: B (n × k) transposed.
                        ProductThreads.gemm(
                            transA: false, transB: true, m: m, n: n, k: k, alpha: 1, pa.baseAddress!, lda: k, pb.baseAddress!, ldb: k,
                            beta: 0, pc.baseAddress!, ldc: n)
                    }
                }
            }
        }
        var worst = 0.0
        for i in stride(from: 0, to: m, by: 37) {
            for j in stride(from: 0, to: n, by: 41) {
                var sum = 0.0
                for p in 0..<k { sum += Double(a[i * k + p]) * Double(b[j * k + p]) }
                worst = max(worst, abs(Double(c[i * n + j]) - sum))
            }
        }
        #expect(worst < 1e-4, "largest difference from the naive product \(worst)")
    }

    /// GELU (forward with its derivative, backward) and LayerNorm backward
    /// (split into a rows pass and a columns pass) against one thread.
    @Test func splitElementwiseKernelsMatchOneThread() {
        let rows = 384, cols = 160, n = rows * cols
        let x = randomArray(n, seed: 7, stream: 1), dy = randomArray(n, seed: 7, stream: 2)
        let gamma = randomArray(cols, seed: 7, stream: 3), beta = randomArray(cols, seed: 7, stream: 4)
        let tall = randomArray(2 * n, seed: 7, stream: 5)
        func run(_ threads: Int) -> [[Float]] {
            withThreads(threads) {
                var y = [Float](repeating: 0, count: n), d = y, dx = y, ln = y, lnDx = y
                var mean = [Float](repeating: 0, count: rows), rstd = mean
                var dg = [Float](repeating: 0.5, count: cols), db = dg
                Kernels.geluForward(x, &y, derivative: &d, count: n)
                Kernels.geluBackward(derivative: d, dy, &dx, count: n)
                Kernels.layerNormForward(x, gamma: gamma, beta: beta, eps: 1e-5, &ln, mean: &mean, rstd: &rstd, rows: rows, cols: cols)
                Kernels.layerNormBackward(dy, x, mean: mean, rstd: rstd, gamma: gamma, &lnDx, dgamma: &dg, dbeta: &db, rows: rows, cols: cols)
                // Bias: broadcast by blocks of rows, its gradient by blocks of
                // columns (beta 1 accumulates); twice the rows, so both split.
                var bias = [Float](repeating: 0, count: 2 * n), sums = gamma
                Kernels.broadcastRows(beta, into: &bias, rows: 2 * rows, cols: cols)
                Kernels.sumRows(tall, rows: 2 * rows, cols: cols, into: &sums, beta: 1)
                return [y, d, dx, ln, mean, rstd, lnDx, dg, db, bias, sums]
            }
        }
        let one = run(1)
        for threads in [2, 3] {
            for (i, part) in run(threads).enumerated() {
                let differ = zip(one[i], part).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differ == 0, "output \(i), \(threads) threads: \(differ) of \(part.count) differ")
            }
        }
    }

    /// bf16 rounding (BF16.round) split into ranges over the threads: the
    /// bits of one thread, and of the rounding's own definition (nearest
    /// even, subnormals to zero), over values of every exponent, ties and
    /// subnormals, in an array long enough to split (and not a multiple of 32).
    @Test func splitBF16RoundingMatchesOneThread() {
        let n = 3 * 65_536 + 37
        var x = randomArray(n, seed: 9, stream: 1)
        for i in 0..<n {
            switch i % 5 {
            case 0: x[i] *= Float(bitPattern: UInt32(1 + (i / 5) % 253) << 23)  // every exponent
            case 1: x[i] = Float(bitPattern: 0x3F80_8000 | UInt32(i % 2) << 16)  // a tie, to even both ways
            case 2: x[i] = Float(bitPattern: UInt32(i % 0x7F_FFFF) | (i % 3 == 0 ? 0x8000_0000 : 0))  // a subnormal
            default: break
            }
        }
        func run(_ threads: Int) -> [UInt16] {
            withThreads(threads) {
                var y = [UInt16](repeating: 0, count: n)
                BF16.round(x, into: &y, count: n)
                return y
            }
        }
        let one = run(1)
        let reference = x.map { v -> UInt16 in
            let b = v.bitPattern
            if b & 0x7F80_0000 == 0 { return UInt16(b >> 16) & 0x8000 }
            return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
        }
        expectEqualElements(one, reference)
        for threads in [2, 3] {
            let split = run(threads)
            expectEqualElements(split, one, "\(threads) threads: \(zip(one, split).filter { $0 != $1 }.count) of \(n) differ")
        }
    }

    /// A large bf16 product on more than one thread is cut into blocks of
    /// rows or columns of C (`ProductCut`), each a one-thread oneDNN plan:
    /// the MLP's and the GPT's shapes, both transposes of each operand, β 0
    /// and not. The cut's bits do not depend on who runs the blocks (the
    /// pool at 1, 2 or 3 threads); each block equals a one-thread product of
    /// that block alone over all of k (the cut never splits a sum); and the
    /// cut stays within float32 accumulation of the uncut product (oneDNN
    /// blocks a sum by the shape it is given, so the bits may differ).
    @Test(.enabled(if: BF16.unavailableReason == nil, "bf16 products cannot run here"))
    func cutBF16ProductsGiveTheSameBitsOnAnyThreadCount() throws {
        let shapes = [(512, 1024, 784), (1024, 784, 512), (512, 10, 1024), (10, 1024, 512), (768, 384, 128), (100, 333, 129)]
        for (m, n, k) in shapes {
            for trans in 0..<4 {
                let ta = trans & 1 == 1, tb = trans & 2 == 2
                let lda = ta ? m : k, ldb = tb ? k : n
                var a = [UInt16](repeating: 0, count: m * k), b = [UInt16](repeating: 0, count: k * n)
                BF16.round(randomArray(m * k, seed: UInt64(m + k), stream: 1), into: &a, count: m * k)
                BF16.round(randomArray(k * n, seed: UInt64(n + k), stream: 2), into: &b, count: k * n)
                let c0 = randomArray(m * n, seed: UInt64(m + n), stream: 3)
                let beta: Float = trans == 3 ? 0 : 0.5
                #expect(BF16Products.blockCount(m: m, n: n, k: k, threads: 1) == 1)
                #expect(BF16Products.blockCount(m: m, n: n, k: k, threads: 2) == min(2, ProductThreads.cores), "\(m)x\(n)x\(k)")
                // C = β·C0 + op(A)·op(B) by `BF16Products` on `threads` threads, the pool at `pool`.
                func product(threads: Int, pool: Int) throws -> [Float] {
                    try withThreads(pool) {
                        var c = c0
                        try BF16Products().gemm(
                            transA: ta, transB: tb, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, beta: beta, &c, ldc: n, threads: threads)
                        return c
                    }
                }
                let whole = try product(threads: 1, pool: 1)
                let cut = try product(threads: 2, pool: 1)
                for pool in [2, 3] {
                    let again = try product(threads: 2, pool: pool)
                    let differ = zip(cut, again).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(differ == 0, "\(m)x\(n)x\(k) transA \(ta) transB \(tb), pool \(pool): \(differ) elements differ")
                }
                // Each block alone, one thread, whole k: the cut's bits.
                let shape = ProductCut(m: m, n: n, parts: BF16Products.blockCount(m: m, n: n, k: k, threads: 2))
                var blocks = c0
                for p in 0..<shape.parts {
                    guard let blk = shape.block(p, m: m, n: n, transA: ta, lda: lda, transB: tb, ldb: ldb, ldc: n) else { continue }
                    try a.withUnsafeBufferPointer { pa in
                        try b.withUnsafeBufferPointer { pb in
                            try blocks.withUnsafeMutableBufferPointer { pc in
                                try BF16Products().gemm(
                                    transA: ta, transB: tb, m: blk.m, n: blk.n, k: k, pa.baseAddress! + blk.a, lda: lda, pb.baseAddress! + blk.b,
                                    ldb: ldb, beta: beta, pc.baseAddress! + blk.c, ldc: n, threads: 1)
                            }
                        }
                    }
                }
                let differ = zip(cut, blocks).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differ == 0, "\(m)x\(n)x\(k) transA \(ta) transB \(tb): \(differ) elements differ from the blocks alone")
                // Against the uncut product: float32 accumulation alone (the
                // operands are bf16 already), k·2⁻²⁴ of Σ|a·b| doubled, entry by entry.
                // About 1,500 entries spread over C (all of them would take minutes in a debug build).
                var worst: Float = 0
                for e in stride(from: 0, to: m * n, by: max(1, m * n / 1500)) {
                    let i = e / n, j = e % n
                    var absSum = abs(beta * c0[e])
                    for l in 0..<k {
                        absSum += abs(BF16.value(a[ta ? l * lda + i : i * lda + l]) * BF16.value(b[tb ? j * ldb + l : l * ldb + j]))
                    }
                    worst = max(worst, abs(cut[e] - whole[e]) / max(absSum, .leastNormalMagnitude))
                }
                #expect(worst <= 2 * Float(k) * 0x1p-24, "\(m)x\(n)x\(k) transA \(ta) transB \(tb): worst \(worst) of Σ|a·b|")
            }
        }
    }

    /// A bias added by the bf16 product's kernel (Linear's forward) gives
    /// the bits of the bias broadcast into C and the product added with
    /// β = 1: uncut, and cut by rows and by columns on two threads (each
    /// block of columns takes its slice of the bias).
    @Test(.enabled(if: BF16.unavailableReason == nil, "bf16 products cannot run here"))
    func bf16BiasInTheKernelGivesTheBroadcastBits() throws {
        for (m, n, k) in [(512, 1024, 784), (64, 1024, 512), (45, 96, 12)] {
            var a = [UInt16](repeating: 0, count: m * k), b = [UInt16](repeating: 0, count: k * n)
            BF16.round(randomArray(m * k, seed: UInt64(m + k), stream: 1), into: &a, count: m * k)
            BF16.round(randomArray(k * n, seed: UInt64(n + k), stream: 2), into: &b, count: k * n)
            let bias = randomArray(n, seed: UInt64(n), stream: 3)
            for threads in [1, 2] {
                try withThreads(threads) {
                    var broadcast = (0..<m * n).map { bias[$0 % n] }
                    try BF16Products().gemm(
                        transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, beta: 1, &broadcast, ldc: n, threads: threads)
                    var inKernel = [Float](repeating: .nan, count: m * n)
                    try bias.withUnsafeBufferPointer { pb in
                        try BF16Products().gemm(
                            transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, beta: 0, &inKernel, ldc: n, threads: threads,
                            bias: pb.baseAddress!)
                    }
                    let differ = zip(broadcast, inKernel).filter { $0.bitPattern != $1.bitPattern }.count
                    let cut = ProductCut(m: m, n: n, parts: BF16Products.blockCount(m: m, n: n, k: k, threads: threads))
                    #expect(differ == 0, "\(m)x\(n)x\(k) on \(threads) threads (\(cut.parts) blocks by \(cut.byRows ? "rows" : "columns")): \(differ) differ")
                }
            }
        }
        // Both cuts were met.
        #expect(ProductCut(m: 512, n: 1024, parts: 2).byRows && !ProductCut(m: 64, n: 1024, parts: 2).byRows)
        // A C whose rows are further apart than n (the bias broadcast there), columns past n untouched.
        let (m, n, k, ldc) = (45, 96, 12, 101)
        var a = [UInt16](repeating: 0, count: m * k), b = [UInt16](repeating: 0, count: k * n)
        BF16.round(randomArray(m * k, seed: 1, stream: 1), into: &a, count: m * k)
        BF16.round(randomArray(k * n, seed: 2, stream: 2), into: &b, count: k * n)
        let bias = randomArray(n, seed: 3, stream: 3)
        var broadcast = (0..<m * ldc).map { $0 % ldc < n ? bias[$0 % ldc] : 7 }
        try BF16Products().gemm(transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, beta: 1, &broadcast, ldc: ldc, threads: 1)
        var strided = [Float](repeating: 7, count: m * ldc)
        try bias.withUnsafeBufferPointer { pb in
            try BF16Products().gemm(
                transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, beta: 0, &strided, ldc: ldc, threads: 1, bias: pb.baseAddress!)
        }
        expectEqualElements(broadcast.map(\.bitPattern), strided.map(\.bitPattern))
    }

    /// oneDNN sizes its OpenMP teams by the calling thread's OpenMP setting,
    /// which a host sharing oneDNN's libgomp (PyTorch's wheel brings one)
    /// uses for its own teams: a bf16 product uncut and cut and a float32
    /// product on oneDNN leave it as they found it (on one thread of a
    /// 2-core machine, it was left at 1 before).
    @Test(.enabled(if: BF16.unavailableReason == nil, "bf16 products cannot run here"))
    func oneDNNCallsLeaveTheCallingThreadsOpenMPSetting() throws {
        let before = OneDNN.callingThreadOpenMPThreads
        #expect(before >= 1)
        let m = 256, n = 512, k = 512
        let a = [UInt16](repeating: 0x3F80, count: m * k), b = [UInt16](repeating: 0x3F80, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        for threads in [1, 2] {
            try withThreads(threads) {
                try BF16Products().gemm(
                    transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, beta: 0, &c, ldc: n, threads: threads)
            }
            #expect(c[0] == Float(k) && c[m * n - 1] == Float(k))
            #expect(OneDNN.callingThreadOpenMPThreads == before, "after a bf16 product on \(threads) threads")
        }
        let x = [Float](repeating: 1, count: m * k), w = [Float](repeating: 1, count: k * n)
        #expect(BLAS.gemmOnOneDNN(transA: false, transB: false, m: m, n: n, k: k, x, lda: k, w, ldb: n, beta: 0, &c, ldc: n))
        #expect(OneDNN.callingThreadOpenMPThreads == before, "after a float32 product on oneDNN")
    }
}
