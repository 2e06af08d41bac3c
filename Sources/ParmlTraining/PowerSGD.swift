import ParmlModel
import ParmlParallel
import ParmlTensor

/// PowerSGD (Vogels, Karimireddy and Jaggi 2019), as PyTorch's
/// `powerSGD_hook` runs it: each gradient matrix M (a parameter of two or
/// more dimensions, rows = its first) is summed over the data-parallel
/// ranks as a rank-r product P·Qᵀ found by one step of power iteration,
/// warm-started from the last step's Q:
///
///   M ← M + e;  P = M·Q, all-reduce P, orthonormalise P's columns;
///   Q = Mᵀ·P, all-reduce Q;  M̂ = P·Qᵀ;  e ← M − M̂/p.
///
/// The P and Q of every matrix travel in one all-reduce each; vectors and
/// matrices too small to gain (min(rows, cols) ≤ r) are summed whole. With
/// the error e, each rank keeps what the approximation left out of its own
/// share (M̂/p of the sum) for the next step. Every rank applies the same M̂.
final class PowerSGDReducer {
    struct Matrix {
        /// Offset in the run's slice, rows × cols.
        let offset: Int
        let rows: Int
        let cols: Int
        /// Offsets of its P (rows × r) and Q (cols × r) in the shared buffers.
        let p: Int
        let q: Int
    }

    let rank: Int
    let matrices: [Matrix]
    /// Parts of the run's slice summed whole (offsets in the slice).
    let plain: [Range<Int>]
    let error: Tensor
    private let pBuffer: Tensor
    private let qBuffer: Tensor
    /// Floats one step all-reduces: P's, Q's and the plain parts.
    let floatsReduced: Int

    /// The parameters of `infos` inside `run` (arena offsets), rank `r`,
    /// Q's first values drawn from `seed`.
    init(run: Range<Int>, infos: [ParameterInfo], rank r: Int, seed: UInt64) throws {
        rank = r
        var matrices: [Matrix] = []
        var plain: [Range<Int>] = []
        var pTotal = 0, qTotal = 0
        for info in infos where info.count > 0 && run.contains(info.offset) {
            let at = info.offset - run.lowerBound
            let rows = info.shape.rank >= 2 ? info.shape[0] : 1
            let cols = info.count / max(rows, 1)
            if info.shape.rank >= 2 && min(rows, cols) > r {
                matrices.append(Matrix(offset: at, rows: rows, cols: cols, p: pTotal, q: qTotal))
                pTotal += rows * r
                qTotal += cols * r
            } else if let last = plain.last, last.upperBound == at {
                plain[plain.count - 1] = last.lowerBound..<(at + info.count)
            } else {
                plain.append(at..<(at + info.count))
            }
        }
        self.matrices = matrices
        self.plain = plain
        error = try Tensor(shape: Shape(max(run.count, 1)))
        error.fill(0)
        pBuffer = try Tensor(shape: Shape(max(pTotal, 1)))
        qBuffer = try Tensor(shape: Shape(max(qTotal, 1)))
        // Q starts as PyTorch's does: random values the same on every rank.
        let philox = Philox(seed: seed)
        philox.fillUniform(qBuffer.data, count: qTotal, stream: RandomStream.powerSGD, low: -1, high: 1)
        floatsReduced = pTotal + qTotal + plain.reduce(0) { $0 + $1.count }
    }

    /// In place over the run's gradients `g` (its slice of the arena).
    func allReduce(_ g: UnsafeMutablePointer<Float>, comm: Communicator) throws {
        let p = comm.size
        guard p > 1 else { return }
        for r in plain { try comm.allReduce(g + r.lowerBound, count: r.count, op: .sum) }
        guard !matrices.isEmpty else { return }
        let e = error.data, r = rank
        for m in matrices {
            let at = g + m.offset
            Kernels.addInPlace(at, e + m.offset, count: m.rows * m.cols)  // M = g + e
            BLAS.gemm(
                transA: false, transB: false, m: m.rows, n: r, k: m.cols, at, lda: m.cols, qBuffer.data + m.q, ldb: r, beta: 0,
                pBuffer.data + m.p, ldc: r)
        }
        try comm.allReduce(pBuffer.data, count: pBuffer.count, op: .sum)
        for m in matrices {
            PowerSGDReducer.orthonormalise(pBuffer.data + m.p, rows: m.rows, columns: r)
            BLAS.gemm(
                transA: true, transB: false, m: m.cols, n: r, k: m.rows, g + m.offset, lda: m.cols, pBuffer.data + m.p, ldb: r,
                beta: 0, qBuffer.data + m.q, ldc: r)
        }
        try comm.allReduce(qBuffer.data, count: qBuffer.count, op: .sum)
        let share = 1 / Float(p)
        for m in matrices {
            let at = g + m.offset, n = m.rows * m.cols
            // e = M, then e −= M̂/p and g = M̂ (the warm start keeps Q).
            (e + m.offset).update(from: at, count: n)
            BLAS.gemm(
                transA: false, transB: true, m: m.rows, n: m.cols, k: r, pBuffer.data + m.p, lda: r, qBuffer.data + m.q, ldb: r,
                beta: 0, at, ldc: m.cols)
            for i in 0..<n { e[m.offset + i] -= share * at[i] }
        }
    }

    /// Gram–Schmidt over the columns of P (rows × columns, row-major), as
    /// PyTorch's hook does, with a small epsilon against a zero column; each
    /// column is projected out twice ("twice is enough"), so that a column
    /// left as rounding noise (a gradient of rank below r) still comes out
    /// orthogonal to the others in float32.
    static func orthonormalise(_ p: UnsafeMutablePointer<Float>, rows: Int, columns c: Int) {
        for i in 0..<c {
            for _ in 0..<2 {
                for j in 0..<i {
                    var dot: Float = 0
                    for k in 0..<rows { dot += p[k * c + i] * p[k * c + j] }
                    for k in 0..<rows { p[k * c + i] -= dot * p[k * c + j] }
                }
            }
            var norm: Float = 0
            for k in 0..<rows { norm += p[k * c + i] * p[k * c + i] }
            let inv = 1 / (norm.squareRoot() + 1e-8)
            for k in 0..<rows { p[k * c + i] *= inv }
        }
    }
}
