import Glibc
import _CParmlBLAS
import _CParmlDNNL
import _CParmlKernels

/// OpenBLAS, loaded on first use with kernels chosen for this CPU.
/// Every engine entry point calls `BLAS.ensureLoaded()` before math runs.
public enum BLAS {
    /// The outcome of the one load attempt (Swift runs this initialiser once,
    /// thread-safely), so checking it on a hot path costs a load and a branch.
    private static let loadFailure: ParmlError? = {
        var err = [CChar](repeating: 0, count: 512)
        let rc = err.withUnsafeMutableBufferPointer { pml_blas_load($0.baseAddress, $0.count) }
        if rc == 0 {
            // Large products to oneDNN, the rest to OpenBLAS (pml_dnnl_sgemm.h),
            // unless PARML_GEMM=openblas; oneDNN itself loads on the first large one.
            // The router reads `skippingProducts`'s switch with its own; without
            // it, a wrapper does (so the default path reads one thread-local a product).
            if largeProductsOnOneDNN { pml_blas_wrap_sgemm(pml_dnnl_sgemm_route) } else { pml_blas_wrap_sgemm(pml_blas_skippable) }
            return nil
        }
        return ParmlError.blas(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }()

    /// Loads OpenBLAS once; throws `.blas` with the reason when it cannot.
    public static func ensureLoaded() throws {
        if let loadFailure { throw loadFailure }
    }

    /// Whether large products go to oneDNN's matmul (pml_dnnl_sgemm.h),
    /// read once, when OpenBLAS loads: `PARML_GEMM=onednn` or `openblas`
    /// chooses; unset (or any other value), on a CPU with AVX-512 (the
    /// kernels parml picks for OpenBLAS there are SkylakeX's), where oneDNN
    /// ran the transformer's projections 2-13 % faster than OpenBLAS's
    /// sgemm, and not elsewhere: on an AVX2-only Zen 3 the 784-1024-1024-10
    /// MLP's step ran 1.05-1.37x faster with every product on OpenBLAS's
    /// Haswell kernels (bench/RESULTS.md, 2026-12-07). Where oneDNN does not
    /// load, OpenBLAS runs them all anyway (`largeProductsDescription`).
    public static let largeProductsOnOneDNN: Bool = largeProductsChoice.onOneDNN

    /// The setting and why, for the plan.
    static let largeProductsChoice: (onOneDNN: Bool, why: String) = {
        let asked = getenv("PARML_GEMM").map { String(cString: $0) } ?? ""
        if asked == "openblas" { return (false, "PARML_GEMM=openblas") }
        if asked == "onednn" { return (true, "PARML_GEMM=onednn") }
        if pml_cpu_coretype().map({ String(cString: $0) }) == "SkylakeX" { return (true, "this CPU has AVX-512") }
        return (false, "this CPU has no AVX-512, where OpenBLAS's kernels ran them faster; PARML_GEMM=onednn sends them to oneDNN")
    }()

    /// Which library runs the float32 products, for the trainer's plan.
    /// Describing loads nothing: oneDNN loads on the first large product
    /// (or convolution), and a model without one never maps it.
    public static var largeProductsDescription: String {
        let (onOneDNN, why) = largeProductsChoice
        guard onOneDNN else { return "products on OpenBLAS (\(why))" }
        guard pml_dnnl_tried() != 0 else { return "large products on oneDNN's matmul where it loads (not loaded yet), the rest on OpenBLAS" }
        if let why = OneDNN.loadError { return "products on OpenBLAS (oneDNN did not load: \(why))" }
        return "large products on oneDNN \(OneDNN.version)'s matmul, the rest on OpenBLAS"
    }

    /// Tests: C = op(A)·op(B) + β·C on oneDNN's float32 matmul whatever
    /// the size and `largeProductsOnOneDNN`; false (C untouched) when
    /// oneDNN does not load or refuses the shape.
    static func gemmOnOneDNN(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>,
        ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) -> Bool {
        pml_dnnl_sgemm_run(
            Int32(transA ? PML_TRANS : PML_NO_TRANS), Int32(transB ? PML_TRANS : PML_NO_TRANS), Int32(m), Int32(n), Int32(k), a,
            Int32(lda), b, Int32(ldb), beta, c, Int32(ldc)) == 0
    }

    /// Whether the router sends a row-major product of this shape and C
    /// row stride to oneDNN (pml_dnnl_sgemm.h) by its shape, oneDNN loading
    /// or not and whatever `largeProductsOnOneDNN` says.
    static func routesToOneDNN(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, ldc: Int) -> Bool {
        pml_dnnl_sgemm_takes(
            Int32(transA ? PML_TRANS : PML_NO_TRANS), Int32(transB ? PML_TRANS : PML_NO_TRANS), Int32(m), Int32(n), Int32(k),
            Int32(ldc), 1) != 0
    }

    /// Whether oneDNN runs this row-major product (one block of `gemm`'s,
    /// C at row stride `ldc`) on its kernels for fewer rows than
    /// PML_DNNL_SGEMM_MIN_SIDE: the strategy advisor times those apart.
    public static func fewRowsOnOneDNN(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, ldc: Int) -> Bool {
        largeProductsOnOneDNN && m < Int(PML_DNNL_SGEMM_MIN_SIDE)
            && routesToOneDNN(transA: transA, transB: transB, m: m, n: n, k: k, ldc: ldc) && OneDNN.available
    }

    /// Runs `body` with the calling thread's work done as for a one-off
    /// (the advisor's probe of a model's buffers): every float32 product on
    /// OpenBLAS and every pool job's parts on this thread. oneDNN compiles
    /// a plan for each new shape on each thread that runs one: the GPT's
    /// probe spent about half of a first advice there, on shapes no step
    /// asks for. Only which kernels run changes, not what is computed.
    public static func asOneOff<R>(_ body: () throws -> R) rethrows -> R {
        let bypassed = pml_dnnl_sgemm_bypass_on_this_thread(1)
        let kept = pml_pool_keep_on_this_thread(1)
        defer {
            pml_dnnl_sgemm_bypass_on_this_thread(bypassed)
            pml_pool_keep_on_this_thread(kept)
        }
        return try body()
    }

    /// Runs `body` with every float32 product the calling thread makes
    /// (`gemm` and its blocks, which it keeps on this thread) returning
    /// at once, C as it was before: for a pass whose values nobody reads.
    /// The advisor's probe of a model's buffers reads only their sizes,
    /// which no layer bases on the values; its products were most of a
    /// first advice (the GPT's 6 passes: 50–70 ms of 110, a 2048-wide
    /// MLP's 16 MB weight gradients 30 ms of 60). Convolutions on oneDNN
    /// and element-wise kernels still compute.
    public static func skippingProducts<R>(_ body: () throws -> R) rethrows -> R {
        // The switch of whichever wrapper `loadFailure` put in front of OpenBLAS.
        let skip = largeProductsOnOneDNN ? pml_dnnl_sgemm_skip_on_this_thread : pml_blas_skip_products_on_this_thread
        let before = skip(1)
        // The switch is this thread's: a block of a cut product run on a
        // pool thread would compute (under ASan, half a 1024 × 1024 C did).
        let kept = pml_pool_keep_on_this_thread(1)
        defer {
            _ = skip(before)
            pml_pool_keep_on_this_thread(kept)
        }
        return try body()
    }

    /// How many large products oneDNN ran, and how many of those it would
    /// take went to OpenBLAS instead (oneDNN absent or refusing the shape),
    /// since the process started.
    public static var largeProductCounts: (onednn: UInt64, openblas: UInt64) {
        var d: UInt64 = 0, o: UInt64 = 0
        pml_dnnl_sgemm_counts(&d, &o)
        return (d, o)
    }

    /// The kernel family OpenBLAS runs ("SkylakeX", "Haswell", "Prescott"...).
    public static var coreName: String { String(cString: pml_blas_core_name()) }
    /// The same as a C string in OpenBLAS's static storage (for the C API).
    public static var coreNameCString: UnsafePointer<CChar> { pml_blas_core_name() }
    /// OpenBLAS's build configuration string.
    public static var config: String { String(cString: pml_blas_config()) }
    /// Who chose the kernels: "user" (OPENBLAS_CORETYPE was set), "parml" or "none".
    public static var coreSource: String { String(cString: pml_blas_coretype_source()) }
    /// The kernel family parml picks for this CPU, if any.
    public static var cpuCoreType: String? { pml_cpu_coretype().map { String(cString: $0) } }

    /// Threads for the calling process's products and element-wise work
    /// (one setting per process): parml's own `WorkerPool`, with OpenBLAS's
    /// internal threads kept at 1 (ProductThreads.swift says why).
    public static var threads: Int {
        get { WorkerPool.threads }
        set {
            // [cores] parml's threads replace OpenBLAS's.
            if pml_blas_get_threads() != 1 { pml_blas_set_threads(1) }
            WorkerPool.setThreads(newValue)
        }
    }

    /// Whether OpenBLAS's kernel family has small-matrix kernels, which
    /// skip packing (SkylakeX and its successors; this machine's Zen 4 runs
    /// Cooperlake's).
    public static var hasSmallMatrixKernels: Bool {
        ["skylakex", "cooperlake", "sapphirerapids"].contains(coreName.lowercased())
    }

    /// Whether a row-major sgemm (C is m × n, k inner) is one OpenBLAS runs
    /// on its small-matrix kernels where it has them: at most 10⁶
    /// multiply-adds, not both operands transposed, and with only B
    /// transposed (x·Wᵀ) only where m·n ≤ 1200 and k ≥ 32 (OpenBLAS's sgemm
    /// small-kernel permit, in column-major terms). On this machine such
    /// products ran at 76–131 GFLOP/s at 4 rows, the packed path one step
    /// past the limit at 25–39 (x·Wᵀ of 4 and 8 rows over 784 × 256: 14 and 68 µs).
    public static func smallMatrixKernel(transA: Bool, transB: Bool, m: Int, n: Int, k: Int) -> Bool {
        guard Double(m) * Double(n) * Double(k) <= 1e6, !(transA && transB) else { return false }
        if transB && !transA { return m * n <= 1200 && k >= 32 }
        return true
    }

    /// How `gemm` runs this product: in `count` blocks of at most `m` × `n`
    /// of C, one sgemm each, over parml's worker threads (count 1: the whole
    /// product as one sgemm on one thread, whatever `threads` says). The
    /// strategy advisor times a product as its blocks, also a cut in two by
    /// rows that a one-thread rank runs uncut (`BalancedRowCut`).
    public static func productBlocks(m: Int, n: Int, k: Int) -> (count: Int, m: Int, n: Int) {
        ProductThreads.blockShape(m: m, n: n, k: k)
    }

    /// One sgemm on the calling thread, never cut into blocks (what each of
    /// `gemm`'s blocks runs): for timing a block's rate.
    public static func gemmOneBlock(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        pml_sgemm(
            Int32(transA ? PML_TRANS : PML_NO_TRANS), Int32(transB ? PML_TRANS : PML_NO_TRANS), Int32(m), Int32(n), Int32(k), 1, a,
            Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C(m×n) = alpha · op(A) · op(B) + beta · C, all row-major.
    /// op(A) is m×k (A is k×m when transA), op(B) is k×n (B is n×k when transB).
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        // [cores] large products go to parml's threads (ProductThreads.swift).
        if ProductThreads.blockCount(m: m, n: n, k: k) > 1 {
            ProductThreads.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
            return
        }
        pml_sgemm(
            Int32(transA ? PML_TRANS : PML_NO_TRANS),
            Int32(transB ? PML_TRANS : PML_NO_TRANS),
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Benchmarks only: runs `body` and returns the shape of every sgemm it
    /// made (up to `capacity`), for timing a step's GEMMs alone. Nothing
    /// else may call sgemm meanwhile (one rank, no other trainer).
    public static func recordingGemms(capacity: Int = 4096, _ body: () throws -> Void) rethrows -> [GemmShape] {
        var calls = [pml_gemm_call](repeating: pml_gemm_call(), count: capacity)
        var made = 0
        // [cores] Whole products, recorded from one thread: the pool waits.
        let threads = WorkerPool.threads
        WorkerPool.setThreads(1)
        defer { WorkerPool.setThreads(threads) }
        try calls.withUnsafeMutableBufferPointer { buf in
            pml_gemm_record_start(buf.baseAddress, capacity)
            defer { made = pml_gemm_record_stop() }
            try body()
        }
        return calls.prefix(min(made, capacity)).map {
            GemmShape(
                transA: $0.trans_a != 0, transB: $0.trans_b != 0, m: Int($0.m), n: Int($0.n), k: Int($0.k), lda: Int($0.lda),
                ldb: Int($0.ldb), ldc: Int($0.ldc), alpha: $0.alpha, beta: $0.beta)
        }
    }

    /// y = alpha · op(A) · x + beta · y with A row-major m×n.
    @inline(__always)
    public static func gemv(
        trans: Bool, m: Int, n: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
        _ x: UnsafePointer<Float>, beta: Float, _ y: UnsafeMutablePointer<Float>
    ) {
        pml_sgemv(
            Int32(trans ? PML_TRANS : PML_NO_TRANS), Int32(m), Int32(n), alpha, a,
            Int32(lda), x, beta, y)
    }
}

/// One sgemm's arguments but its pointers (`BLAS.recordingGemms`), and the
/// floats each operand spans in row-major storage.
public struct GemmShape: Sendable, Equatable {
    public let transA, transB: Bool
    public let m, n, k, lda, ldb, ldc: Int
    public let alpha, beta: Float

    public var aCount: Int { transA ? (k - 1) * lda + m : (m - 1) * lda + k }
    public var bCount: Int { transB ? (n - 1) * ldb + k : (k - 1) * ldb + n }
    public var cCount: Int { (m - 1) * ldc + n }
}
