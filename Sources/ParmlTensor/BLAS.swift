import _CParmlBLAS

/// OpenBLAS, loaded on first use with kernels chosen for this CPU.
/// Every engine entry point calls `BLAS.ensureLoaded()` before math runs.
public enum BLAS {
    /// The outcome of the one load attempt (Swift runs this initialiser once,
    /// thread-safely), so checking it on a hot path costs a load and a branch.
    private static let loadFailure: ParmlError? = {
        var err = [CChar](repeating: 0, count: 512)
        let rc = err.withUnsafeMutableBufferPointer { pml_blas_load($0.baseAddress, $0.count) }
        guard rc != 0 else { return nil }
        return ParmlError.blas(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }()

    /// Loads OpenBLAS once; throws `.blas` with the reason when it cannot.
    public static func ensureLoaded() throws {
        if let loadFailure { throw loadFailure }
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

    /// OpenBLAS threads for the calling process (OpenBLAS's setting is global).
    public static var threads: Int {
        get { Int(pml_blas_get_threads()) }
        set { pml_blas_set_threads(Int32(clamping: newValue)) }
    }

    /// C(m×n) = alpha · op(A) · op(B) + beta · C, all row-major.
    /// op(A) is m×k (A is k×m when transA), op(B) is k×n (B is n×k when transB).
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        pml_sgemm(
            Int32(transA ? PML_TRANS : PML_NO_TRANS),
            Int32(transB ? PML_TRANS : PML_NO_TRANS),
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
