import Synchronization
import _CParmlBLAS
import _CParmlKernels

#if canImport(Glibc)
import Glibc
#endif

/// A large product cut by rows into two blocks whose boundary follows the
/// pace of the two threads that run them, where OpenBLAS's kernels give
/// every such block the whole product's bits.
///
/// Why: this machine's two vCPUs have run up to 9 % apart while both
/// compute, and which one is slower changes between runs and within one
/// (bench/RESULTS.md, 2026-12-07 21:52 and 2026-12-08), so a cut at the
/// middle waits for the slower thread at every product. The gain measured
/// small: the products took 1.010 times as long with the cut fixed (median
/// of 12 windows, 0.990–1.056). Why the bits do not move with the boundary: a block of
/// rows that starts at a multiple of the kernels' granule (12 rows for
/// OpenBLAS's Haswell kernels) is that part of the uncut product bit for bit
/// (`bench/openblas_block_bits.py`). A probe finds the granule on the first
/// large product; where no granule holds, or oneDNN runs the large products,
/// the cut stays fixed (`ProductThreads`). So such a product has the uncut
/// product's bits on any thread count and any boundary, and a one-thread
/// rank runs it uncut: one sgemm, one packing of the shared operand.
enum BalancedRowCut {
    /// Rows every boundary is a multiple of; 0 where no cut keeps the bits.
    static let granule: Int = probeGranule()

    /// The share of a product's rows either block keeps at least.
    static let minimumShare = 0.3

    /// The estimate moves once both places have run this many nanoseconds
    /// (summed), about two steps of the 784-1024-1024-10 MLP at batch 512:
    /// one product's blocks are too short to tell a 2 % difference in pace
    /// from their noise (±6 % between the two blocks of one product here).
    static let window = 60_000_000

    /// Weight of the newest window in the pace estimate. With `window`, the
    /// pair that left the least waiting among 8 ms with 0.5, 20 and 150 ms
    /// with 0.3, and 60 ms with 0.15 (bench/RESULTS.md, 2026-12-08).
    static let smoothing = 0.3

    /// log(pace of pool place 1 ÷ pace of place 0), averaged over recent
    /// products (a Double's bits). One estimate for every shape: the pace
    /// is the CPUs', not the product's.
    private static let paceLog = Atomic<UInt64>(0)

    /// The pace estimate: log(pace of place 1 ÷ pace of place 0), kept
    /// within ±0.5 (a block is never given more than 1.65 times the other's pace).
    static var paceLogRatio: Double {
        get { Double(bitPattern: paceLog.load(ordering: .relaxed)) }
        set { paceLog.store(min(max(newValue, -0.5), 0.5).bitPattern, ordering: .relaxed) }
    }

    /// Whether `gemm` runs this cut: two blocks of rows, on OpenBLAS.
    @inline(__always)
    static func runs(_ cut: ProductCut) -> Bool {
        cut.byRows && cut.parts == 2 && granule > 0 && cut.extent >= 4 * granule
    }

    /// The boundary the next product of `rows` rows gets: the first block's
    /// rows, a multiple of the granule, each block within its minimum share.
    static func boundary(rows: Int) -> Int {
        let g = granule
        let ratio = exp(paceLogRatio)
        let wanted = Double(rows) / (1 + ratio)
        let lo = (Int((Double(rows) * minimumShare).rounded(.up)) + g - 1) / g * g
        let hi = Int((Double(rows) * (1 - minimumShare)).rounded(.down)) / g * g
        let s = Int((wanted / Double(g)).rounded()) * g
        return min(max(s, lo), max(hi, lo))  // lo ≥ g: at least 0.3 of the rows, rounded up to g
    }

    /// The same contract as `BLAS.gemm`, for a cut `runs` accepts.
    static func gemm(_ product: GemmArguments) {
        let m = product.m
        if WorkerPool.threads == 1 {
            product.runRows(0, m)
            return
        }
        let s = boundary(rows: m)
        let timed = gemm(product, boundary: s)
        // Only a product whose blocks ran on places 0 and 1 at once tells their paces.
        guard timed.slots == (0, 1), timed.ns.0 > 0, timed.ns.1 > 0 else { return }
        let work = Double(product.n) * Double(product.k)
        observed.withLock { o in
            o.work0 += Double(s) * work
            o.work1 += Double(m - s) * work
            o.ns0 += timed.ns.0
            o.ns1 += timed.ns.1
            guard o.ns0 + o.ns1 >= window else { return }
            let seen = log((o.work1 / Double(o.ns1)) / (o.work0 / Double(o.ns0)))
            paceLogRatio += smoothing * (seen - paceLogRatio)
            o = Observed()
        }
    }

    /// Work (rows × n × k) and nanoseconds each place ran since the pace
    /// estimate last moved.
    private struct Observed {
        var work0 = 0.0, work1 = 0.0
        var ns0 = 0, ns1 = 0
    }
    private static let observed = Mutex(Observed())

    /// Rows [0, boundary) and [boundary, m) as two sgemm calls on the pool,
    /// each thread taking the block of its own place first; returns which
    /// place ran each block and its nanoseconds.
    @discardableResult
    static func gemm(_ product: GemmArguments, boundary s: Int) -> (slots: (Int, Int), ns: (Int, Int)) {
        var taken: UInt32 = 0
        var record: (Int, Int, Int, Int) = (-1, 0, -1, 0)
        withUnsafeMutablePointer(to: &taken) { taken in
            withUnsafeMutablePointer(to: &record) { record in
                record.withMemoryRebound(to: Int.self, capacity: 4) { record in
                    WorkerPool.run(parts: 2, Blocks(product: product, boundary: s, taken: taken, record: record))
                }
            }
        }
        return ((record.0, record.2), (record.1, record.3))
    }

    private struct Blocks: WorkerTask {
        let product: GemmArguments
        let boundary: Int
        let taken: UnsafeMutablePointer<UInt32>
        let record: UnsafeMutablePointer<Int>

        func run(part _: Int) {
            let slot = Int(pml_pool_slot())
            let block = Int(pml_pool_claim(taken, Int32(slot), 2))
            guard block >= 0 else { return }
            let start = monotonicNanoseconds()
            if block == 0 { product.runRows(0, boundary) } else { product.runRows(boundary, product.m) }
            record[2 * block] = slot
            record[2 * block + 1] = monotonicNanoseconds() - start
        }
    }
}

extension BalancedRowCut {
    /// The rows a block must start at a multiple of for OpenBLAS's sgemm to
    /// give that part of the whole product bit for bit: 16 or 12 where every
    /// cut of the probe's products at such rows does (their transposes, β,
    /// a k that OpenBLAS blocks, a remainder of rows), else 0. 0 too where
    /// oneDNN runs the large products (its matmul blocks a product by the
    /// shape it is given) or OpenBLAS has not loaded. Runs once, on the
    /// first large product: 8.2–8.4 ms on the Zen 3 host.
    static func probeGranule() -> Int {
        guard (try? BLAS.ensureLoaded()) != nil, !BLAS.largeProductsOnOneDNN else { return 0 }
        // (transA, transB, m, n, k, β): past OpenBLAS's small-matrix limit
        // (10⁶ multiply-adds), k past its blocking of k, m a multiple of
        // neither 12 nor 16.
        let shapes: [(Bool, Bool, Int, Int, Int, Float)] = [
            (false, true, 130, 200, 300, 0), (true, false, 130, 150, 520, 1), (false, false, 130, 96, 700, 0),
        ]
        return [16, 12].first { g in shapes.allSatisfy { keepsBits(granule: g, $0) } } ?? 0
    }

    /// Whether cuts of this product at multiples of g rows give the uncut
    /// product's bits.
    private static func keepsBits(granule g: Int, _ shape: (Bool, Bool, Int, Int, Int, Float)) -> Bool {
        let (transA, transB, m, n, k, beta) = shape
        func values(_ count: Int, stream: UInt64) -> [Float] {
            var v = [Float](repeating: 0, count: count)
            v.withUnsafeMutableBufferPointer { Philox(seed: 12).fillUniform($0.baseAddress!, count: count, stream: stream, low: -1, high: 1) }
            return v
        }
        let a = values(m * k, stream: 1), b = values(k * n, stream: 2), initial = values(m * n, stream: 3)
        let lda = transA ? m : k, ldb = transB ? k : n
        let ta = Int32(transA ? PML_TRANS : PML_NO_TRANS), tb = Int32(transB ? PML_TRANS : PML_NO_TRANS)
        var whole = initial, cut = initial
        pml_sgemm_openblas(ta, tb, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, &whole, Int32(n))
        return a.withUnsafeBufferPointer { a in
            cut.withUnsafeMutableBufferPointer { c in
                let a0 = a.baseAddress!, c0 = c.baseAddress!
                // The first three multiples, the middle one and the last.
                let cuts = Set([g, 2 * g, 3 * g, m / 2 / g * g, (m - 1) / g * g].filter { $0 > 0 && $0 < m }).sorted()
                return cuts.allSatisfy { s in
                    initial.withUnsafeBufferPointer { c0.update(from: $0.baseAddress!, count: $0.count) }  // β reads C
                    pml_sgemm_openblas(ta, tb, Int32(s), Int32(n), Int32(k), 1, a0, Int32(lda), b, Int32(ldb), beta, c0, Int32(n))
                    pml_sgemm_openblas(
                        ta, tb, Int32(m - s), Int32(n), Int32(k), 1, a0 + (transA ? s : s * lda), Int32(lda), b, Int32(ldb), beta,
                        c0 + s * n, Int32(n))
                    return whole.withUnsafeBytes { memcmp($0.baseAddress!, c0, $0.count) == 0 }
                }
            }
        }
    }
}
