import Foundation
import Testing
import _ParmlTestSupport

@testable import ParmlTensor

/// oneDNN's float32 matmul as it runs the large products by default
/// (pml_dnnl_sgemm.h): the same contract as OpenBLAS's sgemm, and the same
/// bits from any thread. Called directly, whatever the size, so that the
/// checks hold whatever PARML_GEMM the suite runs with.
@Suite(.enabled(if: OneDNN.available, "oneDNN does not load here")) struct LargeProductTests {
    init() throws { try BLAS.ensureLoaded() }

    /// C = alpha·op(A)·op(B) + beta·C with C inside a wider buffer (ldc > n),
    /// checked element by element against a Double reference, 1e-5 of
    /// Σ|a·b| + |beta·c| (float32's error for k ≤ 256 is under 2e-5 of
    /// that at worst and far below on random data).
    @Test(arguments: [(96, 80, 160), (200, 64, 128), (64, 384, 96), (4, 96, 160), (1, 64, 128)], [0, 1, 2, 3])
    func largeGemmMatchesReference(_ shape: (Int, Int, Int), _ trans: Int) throws {
        let (m, n, k) = shape
        let (transA, transB) = transposeCombos[trans]
        let ldc = n + 3
        for beta: Float in [0, 1, -0.5] {
            let a = randomArray(m * k, seed: UInt64(m + n + k), stream: 1)
            let b = randomArray(k * n, seed: UInt64(m + n + k), stream: 2)
            let c0 = randomArray(m * ldc, seed: UInt64(m + n + k), stream: 3)
            var c = c0
            Self.gemm(transA, transB, m, n, k, a, b, beta, &c, ldc: ldc)
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<ldc {
                    guard j < n else {
                        #expect(c[i * ldc + j] == c0[i * ldc + j], "column \(j) beyond n was written")
                        continue
                    }
                    var sum = 0.0, absSum = 0.0
                    for p in 0..<k {
                        let av = Double(transA ? a[p * m + i] : a[i * k + p]), bv = Double(transB ? b[j * k + p] : b[p * n + j])
                        sum += av * bv
                        absSum += abs(av * bv)
                    }
                    let old = Double(c0[i * ldc + j])
                    let expected = sum + (beta == 0 ? 0 : Double(beta) * old)
                    worst = maxNaN(worst, abs(Double(c[i * ldc + j]) - expected) / (absSum + abs(Double(beta) * old)))
                }
            }
            #expect(worst <= 1e-5, "beta \(beta): max error relative to Σ|a·b| + |βc| is \(worst)")
        }
    }

    /// The route parml takes unless PARML_GEMM chooses: oneDNN on a CPU
    /// with AVX-512 (where parml picks OpenBLAS's SkylakeX kernels),
    /// OpenBLAS elsewhere, where oneDNN's float32 kernels measured slower.
    @Test func largeProductsGoToOneDNNByTheCPUUnlessChosen() {
        let asked = ProcessInfo.processInfo.environment["PARML_GEMM"] ?? ""
        let expected = asked == "onednn" || (asked != "openblas" && BLAS.cpuCoreType == "SkylakeX")
        #expect(BLAS.largeProductsOnOneDNN == expected)
        #expect(BLAS.largeProductsDescription.hasPrefix("products on OpenBLAS") || expected)
    }

    /// Which products the router sends to oneDNN: large ones, a block of
    /// C's columns times a transposed B among them; of fewer than 32 rows,
    /// dy·W and x·Wᵀ (where OpenBLAS is slow), never dyᵀ·x over a few rows
    /// (where oneDNN is).
    @Test func routingByShape() {
        func routes(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, ldc: Int? = nil) -> Bool {
            BLAS.routesToOneDNN(transA: ta, transB: tb, m: m, n: n, k: k, ldc: ldc ?? n)
        }
        #expect(routes(false, true, 768, 128, 512))  // the GPT's projections
        #expect(routes(false, true, 64, 64, 512, ldc: 128))  // a block of columns, B transposed (through scratch)
        #expect(routes(false, false, 64, 64, 512, ldc: 128))
        #expect(!routes(false, true, 32, 32, 32))  // attention's blocks: too small
        // Few rows: the forward, cut into column blocks or not.
        #expect(routes(false, true, 4, 1024, 1024) && routes(false, true, 8, 512, 1024, ldc: 1024))
        #expect(routes(false, true, 16, 512, 1024, ldc: 1024) && routes(false, true, 16, 1024, 1024))
        // dy·W of few rows, whole or a block of columns.
        #expect(routes(false, false, 16, 512, 1024, ldc: 1024) && routes(false, false, 4, 1024, 1024))
        // dyᵀ·x over a few rows (k is the rows), a narrow output, or too little work.
        #expect(!routes(true, false, 1024, 1024, 4) && !routes(true, false, 512, 784, 16))
        #expect(!routes(false, false, 16, 16, 4096) && !routes(false, true, 4, 256, 784))
    }

    /// A block of C's columns times a transposed B of more than a few rows
    /// runs into the thread's contiguous scratch and is copied out: the
    /// same bits as the product with C dense, for beta 0 and 1, and
    /// nothing written past n.
    @Test func columnBlockThroughScratchHasTheDenseBits() throws {
        let (m, n, k) = (48, 96, 160)
        let a = randomArray(m * k, seed: 5, stream: 1), b = randomArray(n * k, seed: 5, stream: 2)
        for beta: Float in [0, 1] {
            let c0 = randomArray(m * 2 * n, seed: 5, stream: 3)
            var dense = (0..<m).flatMap { i in c0[(i * 2 * n)..<(i * 2 * n + n)] }
            var block = c0
            Self.gemm(false, true, m, n, k, a, b, beta, &dense, ldc: n)
            Self.gemm(false, true, m, n, k, a, b, beta, &block, ldc: 2 * n)
            for i in 0..<m {
                expectEqualElements(Array(block[(i * 2 * n)..<(i * 2 * n + n)]), Array(dense[(i * n)..<(i * n + n)]), "beta \(beta), row \(i)")
                expectEqualElements(Array(block[(i * 2 * n + n)..<(i * 2 * n + 2 * n)]), Array(c0[(i * 2 * n + n)..<(i * 2 * n + 2 * n)]))
            }
        }
    }

    /// beta = 0 never reads C: NaNs there do not leak into the result.
    @Test func betaZeroIgnoresC() throws {
        let (m, n, k) = (128, 96, 128)
        let a = randomArray(m * k, seed: 9, stream: 1), b = randomArray(k * n, seed: 9, stream: 2)
        var c = [Float](repeating: .nan, count: m * n)
        Self.gemm(false, true, m, n, k, a, b, 0, &c, ldc: n)
        #expect(c.allSatisfy { $0.isFinite })
    }

    /// Each thread keeps its own plans: the same product on a fresh thread
    /// (a fresh plan) gives the same bits as on this one, run after run.
    @Test func sameBitsOnAnyThread() throws {
        let a = randomArray(768 * 512, seed: 4, stream: 1), b = randomArray(128 * 512, seed: 4, stream: 2)
        let here = Self.product(a, b), again = Self.product(a, b)
        let there = Result()
        let done = DispatchSemaphore(value: 0)
        Thread {
            there.value = Self.product(a, b)
            done.signal()
        }.start()
        done.wait()
        expectEqualElements(here, again)
        expectEqualElements(here, there.value)
    }

    private final class Result: @unchecked Sendable { var value: [Float] = [] }

    /// (768 × 512) · (128 × 512)ᵀ, the GPT's MLP output projection's shape.
    private static func product(_ a: [Float], _ b: [Float]) -> [Float] {
        var c = [Float](repeating: 0, count: 768 * 128)
        gemm(false, true, 768, 128, 512, a, b, 0, &c, ldc: 128)
        return c
    }

    /// `BLAS.gemmOnOneDNN` on dense A and B (lda, ldb their row lengths).
    private static func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float], _ beta: Float, _ c: inout [Float],
        ldc: Int
    ) {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let ran = BLAS.gemmOnOneDNN(
                        transA: transA, transB: transB, m: m, n: n, k: k, pa.baseAddress!, lda: transA ? m : k, pb.baseAddress!,
                        ldb: transB ? k : n, beta: beta, pc.baseAddress!, ldc: ldc)
                    #expect(ran, "oneDNN loads but refused \(m)×\(n)×\(k)")
                }
            }
        }
    }
}
