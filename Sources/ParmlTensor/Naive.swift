#if canImport(Glibc)
import Glibc
#endif

/// Plain, obviously-correct versions of the kernels, kept in the tree as the
/// oracle the tests compare the fast paths against (llm.c keeps its
/// matmul_forward_naive for the same reason). Arrays in, arrays out.
public enum Naive {
    /// C(m×n) = alpha·op(A)·op(B) + beta·C, row-major, accumulated in Double.
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], b: [Float],
        beta: Float, c: [Float]
    ) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * m + i] : a[i * k + p]
                    let bv = transB ? b[j * k + p] : b[p * n + j]
                    s += Double(av) * Double(bv)
                }
                out[i * n + j] = Float(Double(alpha) * s + Double(beta) * Double(c[i * n + j]))
            }
        }
        return out
    }

    public static func layerNorm(x: [Float], gamma: [Float], beta: [Float], eps: Float, rows: Int, cols: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let m = row.reduce(0, +) / Double(cols)
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(cols)
            for c in 0..<cols {
                y[r * cols + c] = Float((row[c] - m) / (v + Double(eps)).squareRoot() * Double(gamma[c]) + Double(beta[c]))
            }
        }
        return y
    }

    /// Mean-reduced softmax cross-entropy and its gradient.
    public static func softmaxCrossEntropy(logits: [Float], targets: [Int], rows: Int, cols: Int) -> (loss: Double, grad: [Float]) {
        var loss = 0.0
        var grad = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            let row = logits[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let mx = row.max()!
            let z = row.map { exp($0 - mx) }.reduce(0, +)
            loss += log(z) + mx - row[targets[r]]
            for c in 0..<cols {
                grad[r * cols + c] = Float((exp(row[c] - mx) / z - (c == targets[r] ? 1 : 0)) / Double(rows))
            }
        }
        return (loss / Double(rows), grad)
    }

    public static func sumOfSquares(_ x: [Float]) -> Double { x.reduce(0) { $0 + Double($1) * Double($1) } }

    public static func gelu(_ x: Float) -> Float { Float(0.5 * Double(x) * (1 + erf(Double(x) / 2.0.squareRoot()))) }
}
