import Foundation
import Testing
import _ParmlTestSupport

@testable import ParmlTensor

let kernelSizes = [1, 3, 17, 33, 1000]

/// Runs a kernel that writes `n` outputs from read-only arrays.
private func apply(_ n: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    var y = [Float](repeating: .nan, count: n)
    y.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    return y
}

/// The activation functions computed in Double: the reference for forward,
/// and the function whose central differences check backward.
private func reference(_ kind: String, _ x: Double) -> Double {
    switch kind {
    case "relu": return max(x, 0)
    case "gelu": return 0.5 * x * erfc(-x / 2.0.squareRoot())  // erfc: no cancellation for x < 0
    case "tanh": return tanh(x)
    default: return 1 / (1 + exp(-x))
    }
}

private func forwardKernel(_ kind: String, _ x: [Float]) -> [Float] {
    x.withUnsafeBufferPointer { px in
        apply(x.count) { y in
            switch kind {
            case "relu": Kernels.reluForward(px.baseAddress!, y, count: x.count)
            case "gelu": Kernels.geluForward(px.baseAddress!, y, count: x.count)
            case "tanh": Kernels.tanhForward(px.baseAddress!, y, count: x.count)
            default: Kernels.sigmoidForward(px.baseAddress!, y, count: x.count)
            }
        }
    }
}

/// ReLU and GELU differentiate through x; tanh and sigmoid through the saved y.
private func backwardKernel(_ kind: String, x: [Float], y: [Float], dy: [Float]) -> [Float] {
    let saved = (kind == "relu" || kind == "gelu") ? x : y
    return saved.withUnsafeBufferPointer { ps in
        dy.withUnsafeBufferPointer { pd in
            apply(x.count) { dx in
                switch kind {
                case "relu": Kernels.reluBackward(ps.baseAddress!, pd.baseAddress!, dx, count: x.count)
                case "gelu": Kernels.geluBackward(ps.baseAddress!, pd.baseAddress!, dx, count: x.count)
                case "tanh": Kernels.tanhBackward(ps.baseAddress!, pd.baseAddress!, dx, count: x.count)
                default: Kernels.sigmoidBackward(ps.baseAddress!, pd.baseAddress!, dx, count: x.count)
                }
            }
        }
    }
}

@Suite struct KernelsTests {
    @Test(arguments: kernelSizes)
    func addBias(_ n: Int) {
        let rows = 5
        let y0 = randomArray(rows * n, seed: 1, stream: UInt64(n))
        let b = randomArray(n, seed: 2, stream: UInt64(n))
        var y = y0
        y.withUnsafeMutableBufferPointer { py in
            b.withUnsafeBufferPointer { Kernels.addBias(py.baseAddress!, $0.baseAddress!, rows: rows, cols: n) }
        }
        var expected = y0
        for r in 0..<rows { for c in 0..<n { expected[r * n + c] += b[c] } }
        expectEqualElements(y, expected, "max abs diff \(maxAbsDiff(y, expected))")
    }

    @Test(arguments: kernelSizes)
    func broadcastRows(_ n: Int) {
        let rows = 3
        let b = randomArray(n, seed: 2, stream: UInt64(n))
        var y = [Float](repeating: .nan, count: rows * n)
        y.withUnsafeMutableBufferPointer { py in
            b.withUnsafeBufferPointer { Kernels.broadcastRows($0.baseAddress!, into: py.baseAddress!, rows: rows, cols: n) }
        }
        expectEqualElements(y, b + b + b)
    }

    /// db = beta·db + Σ_rows dy: beta 0 overwrites (even NaN), 1 accumulates,
    /// anything else decays the old value (SGD momentum folded into backward).
    @Test(arguments: kernelSizes, [Float(0), 1, 0.9])
    func sumRows(_ n: Int, _ beta: Float) {
        let cols = 7
        let dy = randomArray(n * cols, seed: 3, stream: UInt64(n))
        var start = randomArray(cols, seed: 4, stream: UInt64(n))
        if beta == 0 { start[0] = .nan }  // stale garbage must not survive an overwrite
        var db = start
        dy.withUnsafeBufferPointer { pd in
            db.withUnsafeMutableBufferPointer {
                Kernels.sumRows(pd.baseAddress!, rows: n, cols: cols, into: $0.baseAddress!, beta: beta)
            }
        }
        var worst = 0.0, worstDiff = 0.0
        for c in 0..<cols {
            var s = beta == 0 ? 0 : Double(beta) * Double(start[c])
            var absSum = abs(s)
            for r in 0..<n {
                s += Double(dy[r * cols + c])
                absSum += abs(Double(dy[r * cols + c]))
            }
            // Recursive float summation of n+1 terms: |error| ≤ (n+1)·u·Σ|x|, u = 2^-24
            // (plus one rounding of beta·db).
            let bound = Double(n + 2) * 0x1p-24 * absSum + 1e-30
            worstDiff = maxNaN(worstDiff, abs(Double(db[c]) - s))
            worst = maxNaN(worst, abs(Double(db[c]) - s) / bound)
        }
        #expect(worst <= 1, "beta=\(beta): max abs diff \(worstDiff)")
    }

    @Test(arguments: ["relu", "gelu", "tanh", "sigmoid"], kernelSizes)
    func activationForward(_ kind: String, _ n: Int) {
        let x = randomArray(n, seed: 5, stream: UInt64(n), low: -6, high: 6)
        let y = forwardKernel(kind, x)
        var worst = 0.0
        for i in 0..<n {
            let r = reference(kind, Double(x[i]))
            // A few float ulps of the value (libm's float functions are within ~1 ulp;
            // gelu composes erff, a product and a sum), plus 1e-7 near zero.
            worst = maxNaN(worst, abs(Double(y[i]) - r) / (abs(r) * 4e-7 + 1e-7))
        }
        #expect(worst <= 1, "\(kind): max error in units of tolerance \(worst)")
        if kind == "relu" { #expect(y == x.map { $0 > 0 ? $0 : 0 }) }
    }

    /// Backward against central differences of the forward computed in
    /// Double (h = 1e-5; truncation error ~h²·|f'''| < 1e-9). The kernel works
    /// in float, so it is held to 2e-6 absolute + 2e-6 relative.
    @Test(arguments: ["relu", "gelu", "tanh", "sigmoid"], kernelSizes)
    func activationBackward(_ kind: String, _ n: Int) {
        var x = randomArray(n, seed: 6, stream: UInt64(n), low: -5, high: 5)
        // Keep away from ReLU's kink, where the derivative is not defined.
        if kind == "relu" { x = x.map { abs($0) < 1e-3 ? 0.5 : $0 } }
        let dy = randomArray(n, seed: 7, stream: UInt64(n), low: -2, high: 2)
        let y = forwardKernel(kind, x)
        let dx = backwardKernel(kind, x: x, y: y, dy: dy)
        let h = 1e-5
        var worst = 0.0, worstDiff = 0.0
        for i in 0..<n {
            let xi = Double(x[i])
            let fd = (reference(kind, xi + h) - reference(kind, xi - h)) / (2 * h) * Double(dy[i])
            let diff = abs(Double(dx[i]) - fd)
            worstDiff = maxNaN(worstDiff, diff)
            worst = maxNaN(worst, diff / (2e-6 + 2e-6 * abs(fd)))
        }
        #expect(worst <= 1, "\(kind) backward vs central differences: max abs diff \(worstDiff)")
    }

    /// tanh, sigmoid and GELU are parml's own vectorised code (kernels.c),
    /// not libm's: held to 3 ulp (GELU: 6) of the exact value over every 97th
    /// float with |x| in [1e-8, 100] (both signs), and to their limits on
    /// special inputs.
    @Test(arguments: ["tanh", "sigmoid", "gelu"])
    func transcendentalActivationsWithinAFewUlp(_ kind: String) {
        var x: [Float] = []
        var bits: UInt32 = 0x3200_0000  // 7.5e-9
        while bits < 0x42C8_0000 {  // 100
            let f = Float(bitPattern: bits)
            x.append(f)
            x.append(-f)
            bits += 97
        }
        let y = forwardKernel(kind, x)
        var worst = 0.0, worstAt: Float = 0
        for (xi, yi) in zip(x, y) {
            let r = reference(kind, Double(xi))
            guard abs(r) >= 1e-37 else {  // results near the subnormals: absolute
                // (GELU is -0 below x = -13, where it is under 1e-37.)
                #expect(abs(Double(yi) - r) < (kind == "gelu" ? 1e-37 : 1e-38), "\(kind)(\(xi)) = \(yi), exact \(r)")
                continue
            }
            let ulp = Double(Float(r).ulp)
            let e = abs(Double(yi) - r) / ulp
            if e > worst { (worst, worstAt) = (e, xi) }
        }
        #expect(worst <= (kind == "gelu" ? 6 : 3), "\(kind): \(worst) ulp at \(worstAt)")

        let special: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 1e-40, 88, -88, 89, -89, 1e30, -1e30]
        let s = forwardKernel(kind, special)
        if kind == "gelu" {
            #expect(s[0] == 0 && s[1].bitPattern == Float(-0.0).bitPattern && s[2] == .infinity && s[4].isNaN)
            #expect(s[3] == 0 && s[9] == 0 && s[11] == 0, "GELU of a very negative x is -0 (x·Φ(x) underflows)")
            #expect(s[6] == 88 && s[8] == 89 && s[10] == 1e30 && s[5] == special[5] * 0.5)
            return
        }
        if kind == "tanh" {
            #expect(s[0].bitPattern == Float(0).bitPattern && s[1].bitPattern == Float(-0.0).bitPattern, "tanh keeps the sign of zero")
            #expect(s[2] == 1 && s[3] == -1 && s[4].isNaN && s[5] == 1e-40)
            #expect(s[6] == 1 && s[7] == -1 && s[10] == 1 && s[11] == -1)
        } else {
            #expect(s[0] == 0.5 && s[1] == 0.5 && s[2] == 1 && s[3] == 0 && s[4].isNaN && s[5] == 0.5)
            #expect(s[6] == 1 && s[8] == 1 && s[10] == 1 && s[9] == 0 && s[11] == 0)
            #expect(s[7] > 0 && s[7] < 1e-38, "sigmoid(-88) is subnormal, not 0")
        }
    }

    /// Training's GELU keeps its derivative from forward: the same outputs,
    /// and backward gives pml_gelu_backward's bits (0 where it gives 0).
    @Test(arguments: kernelSizes)
    func geluForwardKeepsItsDerivative(_ n: Int) {
        var x = randomArray(n, seed: 12, stream: UInt64(n), low: -15, high: 8)
        if n > 3 { (x[0], x[1], x[2]) = (-14, .nan, 0) }
        let dy = randomArray(n, seed: 13, stream: UInt64(n), low: -2, high: 2)
        var d = [Float](repeating: .nan, count: n)
        let (y, yTrain, plain, cached) = x.withUnsafeBufferPointer { px in
            dy.withUnsafeBufferPointer { pd in
                let y = apply(n) { Kernels.geluForward(px.baseAddress!, $0, count: n) }
                let yTrain = d.withUnsafeMutableBufferPointer { dd in apply(n) { Kernels.geluForward(px.baseAddress!, $0, derivative: dd.baseAddress!, count: n) } }
                let plain = apply(n) { Kernels.geluBackward(px.baseAddress!, pd.baseAddress!, $0, count: n) }
                let cached = d.withUnsafeBufferPointer { dd in apply(n) { Kernels.geluBackward(derivative: dd.baseAddress!, pd.baseAddress!, $0, count: n) } }
                return (y, yTrain, plain, cached)
            }
        }
        expectEqualElements(y.map(\.bitPattern), yTrain.map(\.bitPattern))
        for i in 0..<n where !x[i].isNaN {
            #expect(cached[i] == plain[i] && (plain[i] == 0 || cached[i].bitPattern == plain[i].bitPattern), "x = \(x[i])")
        }
        if n > 3 { #expect(cached[1].isNaN && cached[0] == 0) }
    }

    @Test func reluGradientAtZeroIsZero() {
        let dx = backwardKernel("relu", x: [0, -0.0, 1e-30], y: [0, 0, 1e-30], dy: [1, 1, 1])
        #expect(dx == [0, 0, 1])
    }

    @Test(arguments: kernelSizes)
    func elementwiseArithmetic(_ n: Int) {
        let a = randomArray(n, seed: 8, stream: UInt64(n), low: -3, high: 3)
        let b = randomArray(n, seed: 9, stream: UInt64(n), low: -3, high: 3)
        let prod = a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in apply(n) { Kernels.multiply(pa.baseAddress!, pb.baseAddress!, $0, count: n) } }
        }
        let sum = a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in apply(n) { Kernels.add(pa.baseAddress!, pb.baseAddress!, $0, count: n) } }
        }
        var scaled = a
        scaled.withUnsafeMutableBufferPointer { Kernels.scale($0.baseAddress!, by: -0.37, count: n) }
        // One IEEE operation each: results are exact to the bit.
        expectEqualElements(prod, zip(a, b).map { $0 * $1 })
        expectEqualElements(sum, zip(a, b).map { $0 + $1 })
        expectEqualElements(scaled, a.map { $0 * -0.37 })
    }

    /// In-place use (output aliasing an input), as layers do with buffers.
    @Test func elementwiseInPlace() {
        var a: [Float] = [1, 2, 3]
        let b: [Float] = [4, 5, 6]
        a.withUnsafeMutableBufferPointer { pa in
            b.withUnsafeBufferPointer { Kernels.add(pa.baseAddress!, $0.baseAddress!, pa.baseAddress!, count: 3) }
        }
        #expect(a == [5, 7, 9])
    }

    @Test(arguments: kernelSizes + [0, 15, 16, 31, 32, 4097])
    func sumOfSquares(_ n: Int) {
        let x = randomArray(n, seed: 10, stream: UInt64(n), low: -2, high: 2)
        let padded = x + [7]  // never empty, so there is a base address even for n = 0
        let got = padded.withUnsafeBufferPointer { Kernels.sumOfSquares($0.baseAddress!, count: n) }
        let want = Naive.sumOfSquares(x)
        // Sixteen lanes of ≤ n/16 positive float terms: relative error ≤ (n/16 + 4)·u.
        let rel = abs(Double(got) - want) / max(want, 1e-30)
        #expect(n == 0 ? got == 0 : rel <= 1e-5, "n=\(n): \(got) vs \(want), relative diff \(rel)")
        // A fixed order: the same input gives the same bits.
        let again = padded.withUnsafeBufferPointer { Kernels.sumOfSquares($0.baseAddress!, count: n) }
        #expect(again == got)
    }

    @Test(arguments: kernelSizes)
    func layerNormForward(_ n: Int) {
        let rows = 4
        // An offset mean, so a naive one-pass variance would lose digits.
        let x = randomArray(rows * n, seed: 11, stream: UInt64(n), low: 2, high: 5)
        let gamma = randomArray(n, seed: 12, stream: UInt64(n), low: 0.5, high: 1.5)
        let beta = randomArray(n, seed: 13, stream: UInt64(n))
        let eps: Float = 1e-5
        var mean = [Float](repeating: .nan, count: rows), rstd = [Float](repeating: .nan, count: rows)
        let y = x.withUnsafeBufferPointer { px in
            gamma.withUnsafeBufferPointer { pg in
                beta.withUnsafeBufferPointer { pb in
                    mean.withUnsafeMutableBufferPointer { pm in
                        rstd.withUnsafeMutableBufferPointer { pr in
                            apply(rows * n) {
                                Kernels.layerNormForward(
                                    px.baseAddress!, gamma: pg.baseAddress!, beta: pb.baseAddress!, eps: eps, $0,
                                    mean: pm.baseAddress!, rstd: pr.baseAddress!, rows: rows, cols: n)
                            }
                        }
                    }
                }
            }
        }
        let expected = Naive.layerNorm(x: x, gamma: gamma, beta: beta, eps: eps, rows: rows, cols: n)
        // Normalised values are O(1)·γ ≤ 1.5·√n in the worst row; float sums of n
        // terms give ~n·u relative error on mean/variance: 2e-4 absolute covers n = 1000.
        #expect(maxAbsDiff(y, expected) <= 2e-4, "max abs diff \(maxAbsDiff(y, expected))")
        for r in 0..<rows {
            let row = x[(r * n)..<((r + 1) * n)].map(Double.init)
            let m = row.reduce(0, +) / Double(n)
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n)
            #expect(abs(Double(mean[r]) - m) <= 1e-5 * abs(m), "row \(r) mean \(mean[r]) vs \(m)")
            let rs = 1 / (v + Double(eps)).squareRoot()
            #expect(abs(Double(rstd[r]) - rs) <= 1e-4 * rs, "row \(r) rstd \(rstd[r]) vs \(rs)")
        }
        if n == 1 { #expect(maxAbsDiff(y, [Float](repeating: beta[0], count: 4)) == 0, "one feature normalises to β") }
    }

    /// Returns (loss, dlogits, correct) from the kernel with the mean scale.
    private func crossEntropy(_ logits: [Float], _ targets: [Int], rows: Int, cols: Int) -> (Float, [Float], Int) {
        let t = targets.map { Int32($0) }
        var correct = 0
        var grad = [Float](repeating: .nan, count: rows * cols)
        let loss = logits.withUnsafeBufferPointer { pl in
            t.withUnsafeBufferPointer { pt in
                grad.withUnsafeMutableBufferPointer {
                    Kernels.softmaxCrossEntropy(
                        pl.baseAddress!, targets: pt.baseAddress!, rows: rows, cols: cols, scale: 1 / Float(rows),
                        dlogits: $0.baseAddress!, correct: &correct)
                }
            }
        }
        return (loss, grad, correct)
    }

    @Test(arguments: kernelSizes.map { ($0, 10) } + kernelSizes.map { (4, $0) })
    func softmaxCrossEntropy(_ rows: Int, _ cols: Int) {
        let logits = randomArray(rows * cols, seed: 14, stream: UInt64(rows * 10_000 + cols), low: -4, high: 4)
        let targets = randomArray(rows, seed: 15, stream: UInt64(rows * 10_000 + cols), low: 0, high: 1)
            .map { min(cols - 1, Int($0 * Float(cols))) }
        let (loss, grad, correct) = crossEntropy(logits, targets, rows: rows, cols: cols)
        let ref = Naive.softmaxCrossEntropy(logits: logits, targets: targets, rows: rows, cols: cols)
        #expect(abs(Double(loss) - ref.loss) <= 1e-5 * max(1, ref.loss), "loss \(loss) vs \(ref.loss)")
        #expect(maxAbsDiff(grad, ref.grad) <= 1e-6, "gradient max abs diff \(maxAbsDiff(grad, ref.grad))")
        var hits = 0
        for r in 0..<rows where argmax(logits[(r * cols)..<((r + 1) * cols)]) == targets[r] { hits += 1 }
        #expect(correct == hits)
        if cols == 1 { #expect(loss == 0 && grad.allSatisfy { $0 == 0 }) }
    }

    /// Logits near ±1000 overflow a naive exp; the max-shift keeps it exact.
    @Test func softmaxCrossEntropyIsStableForLargeLogits() {
        let logits: [Float] = [1000, 1001, 999, -1000, -1002, -1001]
        let targets = [1, 2]
        let (loss, grad, correct) = crossEntropy(logits, targets, rows: 2, cols: 3)
        let ref = Naive.softmaxCrossEntropy(logits: logits, targets: targets, rows: 2, cols: 3)
        #expect(loss.isFinite && grad.allSatisfy(\.isFinite))
        // Row 0: log(1 + e^-1 + e^-2) = 0.4076; row 1: 1 + log(1 + e^-1 + e^-2).
        let hand = (log(1 + exp(-1.0) + exp(-2.0)) + 1 + log(1 + exp(-1.0) + exp(-2.0))) / 2
        #expect(abs(ref.loss - hand) <= 1e-12)
        // |logits| = 1000 has an ulp of 6e-5: the loss is good to ~1e-4 absolute.
        #expect(abs(Double(loss) - hand) <= 2e-4, "loss \(loss) vs \(hand)")
        #expect(maxAbsDiff(grad, ref.grad) <= 1e-6, "gradient max abs diff \(maxAbsDiff(grad, ref.grad))")
        // Row 0's arg-max is its target 1; row 1's is class 0, not its target 2.
        #expect(correct == 1)
        // Gradient rows sum to zero (softmax minus one-hot).
        #expect(abs(grad[0] + grad[1] + grad[2]) <= 1e-7)
        #expect(crossEntropy(logits, [1, 0], rows: 2, cols: 3).2 == 2)
        #expect(crossEntropy(logits, [0, 1], rows: 2, cols: 3).2 == 0)
    }

    @Test func crossEntropyWithoutGradient() {
        var correct = 0
        let logits: [Float] = [0, 0, 0, 0]
        let t: [Int32] = [3]
        let loss = logits.withUnsafeBufferPointer { pl in
            t.withUnsafeBufferPointer {
                Kernels.softmaxCrossEntropy(pl.baseAddress!, targets: $0.baseAddress!, rows: 1, cols: 4, scale: 1, dlogits: nil, correct: &correct)
            }
        }
        #expect(abs(Double(loss) - log(4.0)) <= 1e-6)
    }

    @Test func meanSquaredErrorKnownValue() {
        let p: [Float] = [1, 2, 3]
        let t: [Float] = [0, 0, 5]
        var dp = [Float](repeating: .nan, count: 3)
        let loss = p.withUnsafeBufferPointer { pp in
            t.withUnsafeBufferPointer { pt in
                dp.withUnsafeMutableBufferPointer {
                    Kernels.meanSquaredError(pp.baseAddress!, targets: pt.baseAddress!, count: 3, scale: 1.0 / 3, dp: $0.baseAddress!)
                }
            }
        }
        // (1 + 4 + 4)/3 = 3; d/dp = 2(p − t)/3.
        #expect(abs(loss - 3) <= 1e-6, "loss \(loss)")
        let want: [Float] = [2.0 / 3, 4.0 / 3, -4.0 / 3]
        #expect(maxAbsDiff(dp, want) <= 1e-6, "gradient max abs diff \(maxAbsDiff(dp, want))")
    }

    /// As torch.relu: NaN passes through (divergence must not be hidden),
    /// negatives and -inf become 0, and NaN gets zero gradient.
    @Test func reluPropagatesNaN() {
        let x: [Float] = [.nan, -1, 2, -.infinity, .infinity, 0]
        var y = [Float](repeating: 7, count: x.count)
        var dx = [Float](repeating: 7, count: x.count)
        let dy = [Float](repeating: 1, count: x.count)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { Kernels.reluForward(xp.baseAddress!, $0.baseAddress!, count: x.count) }
            dy.withUnsafeBufferPointer { dyp in
                dx.withUnsafeMutableBufferPointer { Kernels.reluBackward(xp.baseAddress!, dyp.baseAddress!, $0.baseAddress!, count: x.count) }
            }
        }
        #expect(y[0].isNaN)
        #expect(Array(y[1...]) == [0, 2, 0, .infinity, 0])
        #expect(dx == [0, 0, 1, 0, 1, 0])
    }
}
