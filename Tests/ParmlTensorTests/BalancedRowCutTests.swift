import Glibc
import Testing
import _CParmlBLAS
import _ParmlTestSupport

@testable import ParmlTensor

/// Two blocks of rows whose boundary follows the threads' paces
/// (BalancedRowCut.swift): every boundary it may pick gives the uncut
/// product's bits, so neither the pace nor the thread count moves a bit.
@Suite(.serialized) struct BalancedRowCutTests {
    init() throws { try BLAS.ensureLoaded() }

    /// The uncut product, one sgemm on this thread.
    private func uncut(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float], _ c0: [Float]) -> [Float] {
        var c = c0
        BLAS.gemmOneBlock(transA: ta, transB: tb, m: m, n: n, k: k, a, lda: ta ? m : k, b, ldb: tb ? k : n, beta: 1, &c, ldc: n)
        return c
    }

    /// The probe's answer on the kernels it can be checked against here:
    /// 12 rows on OpenBLAS's Haswell kernels (bench/openblas_block_bits.py),
    /// none where oneDNN runs the large products.
    @Test func probeFindsTheKernelsGranule() {
        if BLAS.largeProductsOnOneDNN {
            #expect(BalancedRowCut.granule == 0)
        } else if BLAS.coreName.lowercased() == "haswell" {
            #expect(BalancedRowCut.granule == 12)
        } else {
            #expect([0, 12, 16].contains(BalancedRowCut.granule), "\(BLAS.coreName): \(BalancedRowCut.granule)")
        }
        // The probe's products are fixed, so a second probe agrees.
        let start = monotonicNanoseconds()
        #expect(BalancedRowCut.probeGranule() == BalancedRowCut.granule)
        print("granule \(BalancedRowCut.granule) on \(BLAS.coreName); the probe took \(Double(monotonicNanoseconds() - start) / 1e6) ms")
    }

    /// Every boundary within the minimum shares, on the pool's two places,
    /// gives the uncut product bit for bit: the MLP's products at batch 512
    /// (forward, input gradient, weight gradient) and odd shapes.
    @Test func everyBoundaryGivesTheUncutBits() throws {
        let g = BalancedRowCut.granule
        guard g > 0 else { return }  // the cut stays fixed (WorkerPoolTests covers it)
        let saved = BLAS.threads
        BLAS.threads = 2
        defer { BLAS.threads = saved }
        let shapes: [(Bool, Bool, Int, Int, Int)] = [
            (false, true, 512, 1024, 784), (false, false, 512, 784, 1024), (true, false, 1024, 784, 512), (false, true, 300, 700, 333),
            (true, false, 197, 129, 1000),
        ]
        for (ta, tb, m, n, k) in shapes {
            let a = randomArray(m * k, seed: UInt64(m), stream: 1), b = randomArray(k * n, seed: UInt64(n), stream: 2)
            let c0 = randomArray(m * n, seed: UInt64(k), stream: 3)
            let whole = uncut(ta, tb, m, n, k, a, b, c0)
            let lo = (Int((Double(m) * BalancedRowCut.minimumShare).rounded(.up)) + g - 1) / g * g
            let hi = Int((Double(m) * (1 - BalancedRowCut.minimumShare)).rounded(.down)) / g * g
            // Both ends, the middle, and two neighbours (a block start that
            // is a multiple of g but not of 2g).
            let mid = (m / 2) / g * g
            for s in [lo, lo + g, mid, mid + g, hi] {
                var c = c0
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { c in
                            let product = GemmArguments(
                                transA: ta, transB: tb, m: m, n: n, k: k, lda: ta ? m : k, ldb: tb ? k : n, ldc: n, alpha: 1, beta: 1,
                                a: a.baseAddress!, b: b.baseAddress!, c: c.baseAddress!)
                            BalancedRowCut.gemm(product, boundary: s)
                        }
                    }
                }
                let differ = zip(whole, c).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differ == 0, "\(m)x\(n)x\(k) transA \(ta) transB \(tb), boundary \(s): \(differ) elements differ")
            }
        }
    }

    /// The boundary gives the faster place more rows, in multiples of the
    /// granule, and never less than the minimum share to either.
    @Test func boundaryFollowsThePace() {
        let g = BalancedRowCut.granule
        guard g > 0 else { return }
        let saved = BalancedRowCut.paceLogRatio
        defer { BalancedRowCut.paceLogRatio = saved }
        func boundary(placeOneFaster by: Double) -> Int {
            BalancedRowCut.paceLogRatio = log(by)
            return BalancedRowCut.boundary(rows: 512)
        }
        let level = boundary(placeOneFaster: 1), faster = boundary(placeOneFaster: 1.1), slower = boundary(placeOneFaster: 1 / 1.1)
        for s in [level, faster, slower] { #expect(s % g == 0) }
        #expect(abs(level - 256) <= g / 2)
        // 512 / 2.1 = 243.8 rows to place 0 when place 1 is 10 % faster.
        #expect(faster < level && abs(Double(faster) - 512 / 2.1) <= Double(g) / 2)
        #expect(slower > level && abs(Double(slower) - 512 * 1.1 / 2.1) <= Double(g) / 2)
        // The estimate is kept within ±0.5, and the share within 0.3 ... 0.7.
        BalancedRowCut.paceLogRatio = 3
        #expect(BalancedRowCut.paceLogRatio == 0.5)
        BalancedRowCut.paceLogRatio = -3
        let most = BalancedRowCut.boundary(rows: 512)
        #expect(Double(most) <= 512 * (1 - BalancedRowCut.minimumShare) && most > 300)
    }

    /// A product that `gemm` cuts in two by rows keeps the uncut bits
    /// whatever pace estimate it starts from, on one thread (uncut) and two.
    @Test func gemmKeepsTheUncutBitsAtAnyPace() {
        guard BalancedRowCut.granule > 0 else { return }
        let (m, n, k) = (512, 1024, 784)
        let runs = BalancedRowCut.runs(ProductCut(m: m, n: n, parts: ProductThreads.blockCount(m: m, n: n, k: k)))
        #expect(runs == (ProductThreads.blocks == 2))
        guard runs else { return }  // more cores: fixed blocks (WorkerPoolTests)
        let a = randomArray(m * k, seed: 5, stream: 1), b = randomArray(k * n, seed: 6, stream: 2), c0 = randomArray(m * n, seed: 7)
        let whole = uncut(false, true, m, n, k, a, b, c0)
        let savedPace = BalancedRowCut.paceLogRatio, savedThreads = BLAS.threads
        defer {
            BalancedRowCut.paceLogRatio = savedPace
            BLAS.threads = savedThreads
        }
        for threads in [1, 2] {
            BLAS.threads = threads
            for pace in [-0.5, -0.05, 0, 0.08, 0.5] {
                BalancedRowCut.paceLogRatio = pace
                var c = c0
                BLAS.gemm(transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, beta: 1, &c, ldc: n)
                let differ = zip(whole, c).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differ == 0, "\(threads) threads, pace \(pace): \(differ) elements differ")
            }
        }
    }
}
