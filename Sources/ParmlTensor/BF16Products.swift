import Glibc
import _CParmlDNNL
import _CParmlKernels

/// The arithmetic of a trainer's matrix products (docs/precision.md).
/// `.bf16`: operands rounded to bfloat16, products accumulated in float32
/// (oneDNN's matmul on the CPU's AVX512-BF16 instructions); everything else
/// (master weights, optimizer state, losses, softmax, normalisation,
/// reductions) stays float32.
public enum Precision: Int32, Sendable, CaseIterable {
    case float32 = 0, bf16 = 1

    public var name: String {
        switch self {
        case .float32: "float32"
        case .bf16: "bf16"
        }
    }
}

/// bf16 products, process-wide facts: whether they can run here.
public enum BF16 {
    /// Why bf16 products cannot run in this process (nil when they can):
    /// the CPU lacks AVX512-BF16 (oneDNN's emulation on other AVX-512 CPUs
    /// is not used), oneDNN does not load, or it refuses a bf16 matmul.
    /// Checked once, thread-safely.
    public static let unavailableReason: String? = {
        guard pml_cpu_has_avx512_bf16() != 0 else { return "this CPU has no AVX512-BF16 instructions" }
        if let e = OneDNN.loadError { return e }
        do {
            _ = try BF16MatmulPlan(BF16MatmulPlan.Key(m: 4, n: 4, k: 4, transA: false, transB: true, lda: 4, ldb: 4, ldc: 4, beta: 0))
            return nil
        } catch {
            return "\(error)"
        }
    }()

    /// oneDNN's bf16 matmul implementation on this CPU ("brg:avx512_core_bf16"), nil when unavailable.
    public static let implementation: String? = {
        guard unavailableReason == nil else { return nil }
        let key = BF16MatmulPlan.Key(m: 128, n: 128, k: 128, transA: false, transB: true, lda: 128, ldb: 128, ldc: 128, beta: 0)
        return try? BF16MatmulPlan(key).implementation
    }()

    /// What a trainer that asked for `requested` runs: bf16 where it can,
    /// else float32 (the fallback; `unavailableReason` says why).
    public static func resolve(_ requested: Precision) -> Precision {
        requested == .bf16 && unavailableReason == nil ? .bf16 : .float32
    }

    /// y[i] = x[i] rounded to bfloat16 (nearest even; subnormals to zero),
    /// in ranges over the rank's threads (WorkerPool.forRanges): each
    /// element is rounded alone, so any cut gives the same bits, and with
    /// two threads the second core no longer waits while one rounds a
    /// step's weights, inputs and output gradients.
    @inline(__always)
    public static func round(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<UInt16>, count: Int) {
        // Ranges of a multiple of 32 elements: the conversion's vector width.
        WorkerPool.forRanges(count: count, grain: Kernels.Grain.cheap, alignment: 32, BF16RoundTask(x: x, y: y))
    }

    /// The same on the calling thread alone, for a caller already running
    /// on one of the rank's threads (the optimizer rounds the values it has
    /// just updated while they are in cache). The same bits as `round`.
    @inline(__always)
    public static func roundOnThisThread(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<UInt16>, count: Int) {
        pml_bf16_round(x, y, count)
    }

    /// A bfloat16's value as a float32 (exact).
    @inline(__always)
    public static func value(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
}

/// y = x rounded to bf16 on one range of the elements.
struct BF16RoundTask: RangeTask {
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<UInt16>
    @inline(__always) func run(_ r: Range<Int>, part: Int) { pml_bf16_round(x + r.lowerBound, y + r.lowerBound, r.count) }
}

/// One shape's bf16 matmul (pml_dnnl_matmul.h): C = β·C + op(A)·op(B), A
/// and B bf16, C float32, all row-major as `BLAS.gemm` takes them, on one
/// thread (`BF16Products` cuts a large product into blocks for more).
public final class BF16MatmulPlan {
    public struct Key: Equatable, Sendable {
        public let m, n, k: Int
        public let transA, transB: Bool
        public let lda, ldb, ldc: Int
        public let beta: Float
        /// 0: a whole product; p + 1: block p of a product cut over the
        /// rank's threads (each block has its own plan, since a plan runs on
        /// one thread at a time).
        public var part = 0
        /// Adds a float32 bias row to C in the kernel (β must be 0).
        public var bias = false
    }

    fileprivate let plan: OpaquePointer
    public let key: Key
    public let implementation: String

    /// Throws `.blas` when oneDNN is missing or has no bf16 matmul for the shape.
    public init(_ key: Key) throws {
        if let e = OneDNN.loadError { throw ParmlError.blas(e) }
        var s = pml_matmul_shape(
            m: Int64(key.m), n: Int64(key.n), k: Int64(key.k), lda: Int64(key.lda), ldb: Int64(key.ldb), ldc: Int64(key.ldc),
            trans_a: key.transA ? 1 : 0, trans_b: key.transB ? 1 : 0, beta: key.beta, threads: 1, f32: 0, bias: key.bias ? 1 : 0)
        let made = try shimPlan { pml_matmul_plan_create(&s, $0, $1) }
        plan = made
        self.key = key
        implementation = String(cString: pml_matmul_plan_impl(made))
    }

    deinit { pml_matmul_plan_free(plan) }

    /// C = op(A)·op(B) (+ β·C, or + bias for a plan made with one).
    public func run(
        _ a: UnsafePointer<UInt16>, _ b: UnsafePointer<UInt16>, _ c: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>? = nil
    ) throws {
        let st = key.bias ? pml_matmul_run_bias(plan, a, b, bias, c) : pml_matmul_run(plan, a, b, c)
        if st != 0 { throw ParmlError.blas("oneDNN bf16 matmul failed (status \(st))") }
    }
}

/// A growable bfloat16 array: an operand's rounded copy, reused step after
/// step (it allocates only when it must grow).
public final class BF16Array {
    public private(set) var data: UnsafeMutablePointer<UInt16>
    public private(set) var count = 0
    private var capacity = 0
    /// The step serial whose values it holds (`fill(from:count:serial:)`).
    private var serial: UInt64 = 0

    public init() { data = UnsafeMutablePointer<UInt16>.allocate(capacity: 1) }
    deinit { data.deallocate() }

    /// Bytes it holds now, for memory reports.
    public var bytes: Int { capacity * 2 }

    /// Holds x's `count` values rounded to bf16.
    public func fill(from x: UnsafePointer<Float>, count n: Int) {
        if n > capacity {
            data.deallocate()
            data = UnsafeMutablePointer<UInt16>.allocate(capacity: max(n, 1))
            capacity = n
        }
        count = n
        BF16.round(x, into: data, count: n)
        serial = 0
    }

    /// The same, skipped when it already holds this step's copy of these
    /// values: a weight is rounded once per step however many micro-batches
    /// or chunks use it. `serial` is unique to a step (never 0).
    public func fill(from x: UnsafePointer<Float>, count n: Int, serial s: UInt64) {
        if s != 0, s == serial, n == count, source == x { return }
        fill(from: x, count: n)
        serial = s
        source = x
    }

    private var source: UnsafePointer<Float>?
}

/// The bf16 products of one layer: a plan per shape, made the first time a
/// shape comes (a step's forward and backward products, deterministic
/// mode's last chunk, the blocks of a cut product), then kept. Used by one
/// thread at a time (a layer belongs to one rank).
///
/// Every plan runs on one thread. With more than one thread a large
/// product is cut into blocks of rows or columns of C (`ProductCut`, the
/// float32 products' rule: by shape, never over k), one block per thread up
/// to the machine's cores, each block its own one-thread plan, run on the
/// rank's `WorkerPool` threads; so no OpenMP team of oneDNN's runs beside
/// parml's workers (against giving oneDNN the threads, the two-thread MLP
/// step ran 1–2 % faster at batch 512 with both cores free, up to 21 % at
/// batch 128, bench/RESULTS.md). Blocks run one after another when
/// the pool is busy. The cut changes bits against the uncut product
/// (oneDNN blocks a sum by the shape it is given), so it depends only on the
/// setting: the shapes, the thread count and the machine's cores give the
/// same bits on every run, and every layout of deterministic mode (whose
/// chunks have the same shapes on the same thread count) the same bits.
public final class BF16Products {
    private var plans: [BF16MatmulPlan] = []
    /// Enough for every product of training, its chunk sizes and blocks; the oldest goes first.
    private static let capacity = 32
    /// A cut product's block plans while it runs (held here so that none is
    /// freed meanwhile), their pointers and statuses for the blocks: sized
    /// by the largest cut so far, so a warmed-up step allocates nothing.
    private var blockPlans: [BF16MatmulPlan?] = []
    private var blockPointers = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)
    private var blockStatus = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    public init() {}

    deinit {
        blockPointers.deallocate()
        blockStatus.deallocate()
    }

    /// Process-wide unique step serials (never 0): what `BF16Array` keys its
    /// once-per-step weight copies on, so that a trainer rebuilt or reloaded
    /// at the same step index never reuses a stale copy.
    public static func nextSerial() -> UInt64 { pml_bf16_next_serial() }

    /// The blocks `gemm` cuts a product into on `threads` threads: 1 (whole)
    /// on one thread or below `ProductThreads.minimumVolume`, else up to
    /// min(threads, cores).
    public static func blockCount(m: Int, n: Int, k: Int, threads: Int) -> Int {
        threads > 1 ? ProductThreads.blockCount(m: m, n: n, k: k, blocks: min(threads, ProductThreads.cores)) : 1
    }

    /// C(m×n) = β·C + op(A)·op(B) as `BLAS.gemm`, with bf16 A and B, on
    /// `threads` threads (0: `BLAS.threads`). With `bias` (n floats, β = 0):
    /// C = op(A)·op(B) + bias in every row, added by the kernel as it
    /// stores C where C is dense (the bits of broadcasting the bias into C
    /// and adding the product with β = 1, without that pass over C); a
    /// product cut by columns broadcasts it (gemmInBlocks).
    public func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        _ a: UnsafePointer<UInt16>, lda: Int, _ b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = 0, bias: UnsafePointer<Float>? = nil
    ) throws {
        guard m > 0, n > 0 else { return }
        guard bias == nil || beta == 0 else { throw ParmlError.internal("bf16 product: a bias replaces beta, got beta \(beta)") }
        guard k > 0 else {
            // An empty sum: C = β·C (or the bias), as sgemm leaves it.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = bias.map { $0[j] } ?? (beta == 0 ? 0 : beta * c[i * ldc + j]) } }
            return
        }
        let parts = Self.blockCount(m: m, n: n, k: k, threads: threads > 0 ? threads : max(1, BLAS.threads))
        if parts > 1 {
            try gemmInBlocks(
                ProductCut(m: m, n: n, parts: parts), transA: transA, transB: transB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb,
                beta: beta, c, ldc: ldc, bias: bias)
            return
        }
        if let bias, ldc != n {
            for r in 0..<m { (c + r * ldc).update(from: bias, count: n) }
            try plan(BF16MatmulPlan.Key(m: m, n: n, k: k, transA: transA, transB: transB, lda: lda, ldb: ldb, ldc: ldc, beta: 1)).run(a, b, c)
            return
        }
        var key = BF16MatmulPlan.Key(m: m, n: n, k: k, transA: transA, transB: transB, lda: lda, ldb: ldb, ldc: ldc, beta: beta)
        key.bias = bias != nil
        try plan(key).run(a, b, c, bias: bias)
    }

    /// The plan for `key`, made on first sight.
    private func plan(_ key: BF16MatmulPlan.Key) throws -> BF16MatmulPlan {
        if let hit = plans.first(where: { $0.key == key }) { return hit }
        let made = try BF16MatmulPlan(key)
        if plans.count == Self.capacity { plans.removeFirst() }
        plans.append(made)
        return made
    }

    /// `gemm` as `cut`'s blocks, each on its own plan, run on the `WorkerPool`.
    private func gemmInBlocks(
        _ cut: ProductCut, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        _ a: UnsafePointer<UInt16>, lda: Int, _ b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?
    ) throws {
        if blockPlans.count < cut.parts {
            blockPlans = Array(repeating: nil, count: cut.parts)
            blockPointers.deallocate()
            blockPointers = .allocate(capacity: cut.parts)
            blockStatus.deallocate()
            blockStatus = .allocate(capacity: cut.parts)
        }
        defer { for p in 0..<cut.parts { blockPlans[p] = nil } }
        // A block's C is not dense (its rows are ldc apart), and there
        // oneDNN 2.6 applies a β other than 0 and 1 in a scalar loop before
        // the product (8 % of a dW block's time, folded momentum's β = 0.9):
        // the block scales its C by β itself, vectorised, and its plan adds
        // with β = 1. The same single rounding of β·C per element.
        let scale: Float = beta != 0 && beta != 1 ? beta : 1
        // A bias: blocks of rows of a dense C have their plans add it (as
        // an uncut product's does); other blocks broadcast their slice of
        // it and add the product with β = 1, since where C is not dense the
        // kernel's bias gives other bits than that (oneDNN 2.6).
        let kernelBias = bias != nil && cut.byRows && ldc == n
        let blockBeta: Float = bias != nil && !kernelBias ? 1 : scale != 1 ? 1 : beta
        for p in 0..<cut.parts {
            blockPointers[p] = nil
            blockStatus[p] = 0
            guard let blk = cut.block(p, m: m, n: n, transA: transA, lda: lda, transB: transB, ldb: ldb, ldc: ldc) else { continue }
            let made = try plan(
                BF16MatmulPlan.Key(
                    m: blk.m, n: blk.n, k: k, transA: transA, transB: transB, lda: lda, ldb: ldb, ldc: ldc, beta: blockBeta,
                    part: p + 1, bias: kernelBias))
            blockPlans[p] = made
            blockPointers[p] = made.plan
        }
        WorkerPool.run(
            parts: cut.parts,
            BF16Blocks(
                cut: cut, transA: transA, transB: transB, m: m, n: n, lda: lda, ldb: ldb, ldc: ldc, scale: scale, a: a, b: b, c: c,
                bias: bias, kernelBias: kernelBias, plans: blockPointers, status: blockStatus))
        for p in 0..<cut.parts where blockStatus[p] != 0 {
            throw ParmlError.blas("oneDNN bf16 matmul failed (status \(blockStatus[p]))")
        }
    }
}

/// Block p of a cut bf16 product, on its own one-thread plan (`ProductCut.block`).
private struct BF16Blocks: WorkerTask {
    let cut: ProductCut
    let transA, transB: Bool
    let m, n, lda, ldb, ldc: Int
    /// β when the plans add with β = 1 (`gemmInBlocks`), else 1.
    let scale: Float
    let a, b: UnsafePointer<UInt16>
    let c: UnsafeMutablePointer<Float>
    /// The whole product's bias row, or nil, and whether the blocks' plans
    /// add it in the kernel (else each block broadcasts its slice first):
    /// `gemmInBlocks` decides, and made the plans to match.
    let bias: UnsafePointer<Float>?
    let kernelBias: Bool
    let plans: UnsafeMutablePointer<OpaquePointer?>
    let status: UnsafeMutablePointer<Int32>

    func run(part p: Int) {
        guard let plan = plans[p], let blk = cut.block(p, m: m, n: n, transA: transA, lda: lda, transB: transB, ldb: ldb, ldc: ldc) else { return }
        if scale != 1 { for r in 0..<blk.m { pml_scale(c + blk.c + r * ldc, scale, blk.n) } }
        if let bias, kernelBias {
            status[p] = pml_matmul_run_bias(plan, a + blk.a, b + blk.b, bias, c + blk.c)
            return
        }
        if let bias {
            // Its slice of the bias (a block of columns starts at column
            // blk.c of row 0), then β = 1 (gemmInBlocks).
            let first = cut.byRows ? 0 : blk.c
            for r in 0..<blk.m { (c + blk.c + r * ldc).update(from: bias + first, count: blk.n) }
        }
        status[p] = pml_matmul_run(plan, a + blk.a, b + blk.b, c + blk.c)
    }
}
