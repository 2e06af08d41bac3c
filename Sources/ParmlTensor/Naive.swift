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

    /// Direct 2-D convolution (cross-correlation), NCHW as torch.nn.functional.conv2d:
    /// x (n, c, h, w), weight (o, c/groups, kh, kw), bias (o) or empty;
    /// returns y (n, o, ho, wo) and its height and width, accumulated in Double.
    public static func conv2d(
        x: [Float], n: Int, c: Int, h: Int, w: Int, weight: [Float], bias: [Float], outChannels o: Int, kernel: (Int, Int),
        stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int
    ) -> (y: [Float], height: Int, width: Int) {
        let ho = (h + 2 * padding.0 - dilation.0 * (kernel.0 - 1) - 1) / stride.0 + 1
        let wo = (w + 2 * padding.1 - dilation.1 * (kernel.1 - 1) - 1) / stride.1 + 1
        let cg = c / groups, og = o / groups
        var y = [Float](repeating: 0, count: n * o * ho * wo)
        for s in 0..<n {
            for oc in 0..<o {
                let g = oc / og
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var acc = bias.isEmpty ? 0.0 : Double(bias[oc])
                        for ic in 0..<cg {
                            for i in 0..<kernel.0 {
                                for j in 0..<kernel.1 {
                                    let iy = oy * stride.0 - padding.0 + i * dilation.0
                                    let ix = ox * stride.1 - padding.1 + j * dilation.1
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    let xv = x[((s * c + g * cg + ic) * h + iy) * w + ix]
                                    let wv = weight[((oc * cg + ic) * kernel.0 + i) * kernel.1 + j]
                                    acc += Double(xv) * Double(wv)
                                }
                            }
                        }
                        y[((s * o + oc) * ho + oy) * wo + ox] = Float(acc)
                    }
                }
            }
        }
        return (y, ho, wo)
    }

    /// Max or average pooling over planes (count planes of h×w), as PyTorch's
    /// max_pool2d and avg_pool2d (floor mode): padding is never the max; the
    /// average divides by kh·kw (countIncludePad) or by the cells inside.
    public static func pool2d(
        x: [Float], planes: Int, h: Int, w: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), max: Bool,
        countIncludePad: Bool = true
    ) -> (y: [Float], height: Int, width: Int) {
        let ho = (h + 2 * padding.0 - kernel.0) / stride.0 + 1
        let wo = (w + 2 * padding.1 - kernel.1) / stride.1 + 1
        var y = [Float](repeating: 0, count: planes * ho * wo)
        for p in 0..<planes {
            for oy in 0..<ho {
                for ox in 0..<wo {
                    var best = -Float.infinity
                    var sum = 0.0
                    var inside = 0
                    for i in 0..<kernel.0 {
                        for j in 0..<kernel.1 {
                            let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
                            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                            let v = x[(p * h + iy) * w + ix]
                            best = Swift.max(best, v)
                            sum += Double(v)
                            inside += 1
                        }
                    }
                    let count = countIncludePad ? kernel.0 * kernel.1 : inside
                    y[(p * ho + oy) * wo + ox] = max ? best : Float(sum / Double(count))
                }
            }
        }
        return (y, ho, wo)
    }
}
