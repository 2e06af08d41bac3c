#if canImport(Glibc)
import Glibc
#endif
import Testing
import _CParmlBLAS
import _CParmlKernels
import _ParmlTestSupport

@testable import ParmlTensor

/// One sgemm problem: C(m×n) = alpha·op(A)·op(B) + beta·C.
struct GemmCase: Sendable, CustomTestStringConvertible {
    let m: Int, n: Int, k: Int
    var testDescription: String { "m=\(m) n=\(n) k=\(k)" }
}

/// Odd shapes: primes, 1s, and sizes that are not multiples of the kernels'
/// 16-wide (AVX-512) or 8-wide blocks, plus a few that cross a block edge.
let gemmCases: [GemmCase] = [
    (1, 1, 1), (1, 7, 3), (7, 1, 3), (3, 3, 1), (2, 3, 7), (17, 1, 31), (1, 17, 31),
    (3, 17, 2), (7, 31, 17), (17, 17, 17), (31, 7, 64), (64, 3, 129), (129, 2, 31),
    (2, 129, 17), (31, 64, 7), (64, 31, 129), (17, 129, 64), (129, 17, 3), (129, 129, 7),
    (64, 64, 64), (1, 129, 129),
].map { GemmCase(m: $0.0, n: $0.1, k: $0.2) }

let transposeCombos: [(Bool, Bool)] = [(false, false), (true, false), (false, true), (true, true)]

/// C(m×n) = A·B + β·C through `BLAS.gemm`, every matrix dense and untransposed.
private func denseGemm(_ a: [Float], _ b: [Float], _ c: inout [Float], m: Int, n: Int, k: Int, beta: Float) {
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            c.withUnsafeMutableBufferPointer { pc in
                BLAS.gemm(
                    transA: false, transB: false, m: m, n: n, k: k, pa.baseAddress!, lda: k, pb.baseAddress!, ldb: n, beta: beta,
                    pc.baseAddress!, ldc: n)
            }
        }
    }
}

@Suite struct BLASTests {
    init() throws { try BLAS.ensureLoaded() }

    /// Tolerance: float32 sgemm's error is bounded by about k·u·Σ|a||b| (u = 2^-24
    /// ≈ 6e-8); for k ≤ 129 that is ≤ 7.7e-6 of the absolute sum, so each element
    /// is checked against 1e-5 of |alpha|·Σ|a·b| + |beta·c| (the Naive result is
    /// accumulated in Double, so it is exact to float rounding).
    @Test(arguments: gemmCases, [0, 1, 2, 3])
    func gemmMatchesNaive(_ s: GemmCase, _ trans: Int) throws {
        let (transA, transB) = transposeCombos[trans]
        let (m, n, k) = (s.m, s.n, s.k)
        let seed = UInt64(m * 1_000_000 + n * 1000 + k)
        let a = randomArray(m * k, seed: seed, stream: 1)
        let b = randomArray(k * n, seed: seed, stream: 2)
        let c0 = randomArray(m * n, seed: seed, stream: 3)
        let alpha: Float = 0.75, beta: Float = -0.5
        let expected = Naive.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, b: b, beta: beta, c: c0)
        var c = c0
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    BLAS.gemm(
                        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                        pa.baseAddress!, lda: transA ? m : k, pb.baseAddress!, ldb: transB ? k : n,
                        beta: beta, pc.baseAddress!, ldc: n)
                }
            }
        }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var absSum = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * m + i] : a[i * k + p]
                    let bv = transB ? b[j * k + p] : b[p * n + j]
                    absSum += abs(Double(av) * Double(bv))
                }
                let scale = Double(abs(alpha)) * absSum + Double(abs(beta)) * abs(Double(c0[i * n + j]))
                let err = abs(Double(c[i * n + j]) - Double(expected[i * n + j]))
                worst = maxNaN(worst, err / max(scale, 1e-30))
            }
        }
        #expect(worst <= 1e-5, "transA=\(transA) transB=\(transB): max error relative to Σ|a·b| is \(worst); max abs diff \(maxAbsDiff(c, expected))")
    }

    /// Leading dimensions larger than the rows (sub-matrices of bigger
    /// buffers): only the addressed elements are read and written.
    @Test func gemmRespectsLeadingDimensions() throws {
        let (m, n, k) = (5, 7, 3)
        let (lda, ldb, ldc) = (k + 2, n + 3, n + 1)
        let a = randomArray(m * lda, seed: 11, stream: 1)
        let b = randomArray(k * ldb, seed: 11, stream: 2)
        var c = randomArray(m * ldc, seed: 11, stream: 3)
        let c0 = c
        // Dense copies for the oracle.
        var ad = [Float](), bd = [Float](), cd = [Float]()
        for i in 0..<m { ad += a[(i * lda)..<(i * lda + k)] }
        for p in 0..<k { bd += b[(p * ldb)..<(p * ldb + n)] }
        for i in 0..<m { cd += c[(i * ldc)..<(i * ldc + n)] }
        let expected = Naive.gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1.5, a: ad, b: bd, beta: 2, c: cd)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    BLAS.gemm(
                        transA: false, transB: false, m: m, n: n, k: k, alpha: 1.5, pa.baseAddress!, lda: lda,
                        pb.baseAddress!, ldb: ldb, beta: 2, pc.baseAddress!, ldc: ldc)
                }
            }
        }
        var got = [Float]()
        for i in 0..<m { got += c[(i * ldc)..<(i * ldc + n)] }
        #expect(maxAbsDiff(got, expected) <= 1e-5, "max abs diff \(maxAbsDiff(got, expected))")
        // The padding column of each C row is untouched.
        for i in 0..<m { #expect(c[i * ldc + n] == c0[i * ldc + n], "padding of row \(i) changed") }
    }

    /// beta = 1 accumulates: two calls give twice the product (exactly, for a
    /// single k block, since the second call adds the same product to it).
    @Test func gemmBetaOneAccumulates() throws {
        let (m, n, k) = (9, 13, 5)
        let a = randomArray(m * k, seed: 5, stream: 1)
        let b = randomArray(k * n, seed: 5, stream: 2)
        var once = [Float](repeating: 0, count: m * n)
        var twice = [Float](repeating: 0, count: m * n)
        denseGemm(a, b, &once, m: m, n: n, k: k, beta: 0)
        denseGemm(a, b, &twice, m: m, n: n, k: k, beta: 0)
        denseGemm(a, b, &twice, m: m, n: n, k: k, beta: 1)
        let doubled = once.map { 2 * $0 }
        #expect(maxAbsDiff(twice, doubled) <= 1e-6, "max abs diff \(maxAbsDiff(twice, doubled))")
    }

    /// Under `skippingProducts` no product writes C, whichever library or
    /// how many blocks would run it (a small one on OpenBLAS, a large one
    /// the router sends to oneDNN, one `gemm` cuts in blocks, kept on this
    /// thread by `skippingProducts` itself, with or without `asOneOff`);
    /// outside it, and once it ends (nested too), the same calls compute
    /// again. (Until 2026-12-07 the blocks stayed on the calling thread only
    /// under `asOneOff`, and a clean-clone CI under ASan found half of the
    /// nested scope's 1024 × 1024 C computed by a pool thread.)
    @Test(arguments: [(3, 5, 7), (300, 256, 256), (1024, 1024, 64)])
    func skippedProductsLeaveCAsItWas(shape: (Int, Int, Int)) throws {
        let (m, n, k) = shape
        let a = randomArray(m * k, seed: 11, stream: 1), b = randomArray(k * n, seed: 11, stream: 2)
        let before = randomArray(m * n, seed: 11, stream: 3)
        func product(beta: Float) -> [Float] {
            var c = before
            denseGemm(a, b, &c, m: m, n: n, k: k, beta: beta)
            return c
        }
        let computed = product(beta: 0)
        #expect(computed != before)
        let skipped = BLAS.asOneOff { BLAS.skippingProducts { (product(beta: 0), product(beta: 1)) } }
        #expect(skipped.0 == before && skipped.1 == before)
        // Without asOneOff too: the pool keeps every block on this thread
        // inside the scope (reading the setting leaves it as it was), and
        // the previous setting is back after.
        let keptBefore = pml_pool_keep_on_this_thread(0)
        #expect(BLAS.skippingProducts { pml_pool_keep_on_this_thread(1) } == 1)
        #expect(pml_pool_keep_on_this_thread(keptBefore) == 0)
        for _ in 0..<5 { expectEqualElements(BLAS.skippingProducts { product(beta: 0) }, before) }
        // A nested scope restores the outer one's setting, not "compute".
        let nested = BLAS.skippingProducts { () -> [Float] in
            _ = BLAS.skippingProducts { product(beta: 0) }
            return product(beta: 0)
        }
        expectEqualElements(nested, before)
        // Computed again: to rounding, since which thread's oneDNN plan runs
        // a block is not this test's concern (on 2026-12-07 a clean-clone CI
        // under ASan, other suites running beside it, read different bits
        // here, and the testing library's diff of the two 1 M-float arrays
        // then ran past 15 minutes). Comparing Bools keeps a failure quick.
        let again = product(beta: 0)
        let apart = maxAbsDiff(again, computed)
        #expect(again != before && apart <= 1e-3, "max abs diff \(apart)")
    }

    @Test(arguments: [(1, 1), (1, 17), (17, 1), (3, 7), (31, 17), (64, 129), (129, 33), (1000, 3)].map { GemmCase(m: $0.0, n: $0.1, k: 0) },
          [false, true])
    func gemvMatchesNaive(_ s: GemmCase, _ trans: Bool) throws {
        let (m, n) = (s.m, s.n)
        let a = randomArray(m * n, seed: UInt64(m * 7919 + n), stream: 1)
        let xLen = trans ? m : n, yLen = trans ? n : m
        let x = randomArray(xLen, seed: UInt64(m * 7919 + n), stream: 2)
        let y0 = randomArray(yLen, seed: UInt64(m * 7919 + n), stream: 3)
        let alpha: Float = -1.25, beta: Float = 0.5
        // y = alpha·op(A)·x + beta·y is a gemm with one output column.
        let expected = Naive.gemm(transA: trans, transB: false, m: yLen, n: 1, k: xLen, alpha: alpha, a: a, b: x, beta: beta, c: y0)
        var y = y0
        a.withUnsafeBufferPointer { pa in
            x.withUnsafeBufferPointer { px in
                y.withUnsafeMutableBufferPointer { py in
                    BLAS.gemv(trans: trans, m: m, n: n, alpha: alpha, pa.baseAddress!, lda: n, px.baseAddress!, beta: beta, py.baseAddress!)
                }
            }
        }
        var worst = 0.0
        for i in 0..<yLen {
            var absSum = 0.0
            for p in 0..<xLen {
                let av = trans ? a[p * n + i] : a[i * n + p]
                absSum += abs(Double(av) * Double(x[p]))
            }
            let scale = Double(abs(alpha)) * absSum + Double(abs(beta)) * abs(Double(y0[i]))
            worst = maxNaN(worst, abs(Double(y[i]) - Double(expected[i])) / max(scale, 1e-30))
        }
        // Same bound as gemm: k·u with k ≤ 1000 is 6e-5 in the worst case; random
        // signs keep it far lower, 1e-5 of Σ|a·x| leaves a wide margin in practice.
        #expect(worst <= 1e-5, "trans=\(trans): max error relative to Σ|a·x| is \(worst); max abs diff \(maxAbsDiff(y, expected))")
    }

    @Test func coreNameIsChosenByParml() throws {
        let name = BLAS.coreName
        #expect(!name.isEmpty)
        #expect(name != "unloaded")
        #expect(!BLAS.config.isEmpty)
        let userSet = getenv("OPENBLAS_CORETYPE") != nil
        if let pick = BLAS.cpuCoreType, !userSet {
            // parml set the variable for the load only, then removed it again.
            #expect(BLAS.coreSource == "parml")
            if pick == "SkylakeX" {
                #expect(name == "SkylakeX", "CPU supports AVX-512 but OpenBLAS runs \(name) kernels (config: \(BLAS.config))")
            }
        }
        if userSet { #expect(BLAS.coreSource == "user") }
    }

    /// The setter's effect is read from what it returns and from OpenBLAS's
    /// own count, not from `BLAS.threads`: trainers in other suites set the
    /// one per-process count while this runs.
    @Test func threadsCanBeSetAndReadBack() throws {
        let original = BLAS.threads
        #expect(original >= 1)
        #expect(WorkerPool.setThreads(1) == 1)
        #expect(WorkerPool.setThreads(3) == 3)
        #expect(WorkerPool.setThreads(0) == 1)
        BLAS.threads = original
        // parml's pool replaces OpenBLAS's threads, whatever count is asked for.
        #expect(pml_blas_get_threads() == 1)
    }

    @Test func ensureLoadedIsIdempotent() throws {
        try BLAS.ensureLoaded()
        try BLAS.ensureLoaded()
        #expect(BLAS.coreName == BLAS.coreName)
    }
}
