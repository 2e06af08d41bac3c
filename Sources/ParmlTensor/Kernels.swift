import _CParmlKernels

#if canImport(Glibc)
import Glibc
#endif

// Shape legend: N = rows (samples), C = columns (features).
// Each kernel takes raw pointers and counts that its caller has validated;
// loops index within [0, N*C) by construction, so -Ounchecked drops no check
// that could fire. Matrix products go to OpenBLAS (BLAS.gemm); these are the
// element-wise loops and small reductions around them. Bias, activations
// (tanh, sigmoid and GELU included, in vectorised float arithmetic rather
// than a libm call per element), element-wise arithmetic and the sum of
// squares run in C (_CParmlKernels), each compiled for AVX-512, AVX2 and
// baseline x86-64 (target_clones) and picked at load time, since Swift cannot
// multiversion a function; _CParmlKernels also holds the optimizer updates,
// which Optimizer.swift calls directly. The losses stay in Swift, below.
// Element-wise loops and LayerNorm above a grain split over the rank's
// threads (WorkerPool.forRanges) in ranges that change no bit. Naive.swift
// holds the straightforward versions the tests compare against.
public enum Kernels {
    /// Elements below which an element-wise loop stays on one thread
    /// (WorkerPool.forRanges): a hand-over costs a few µs; a cheap loop
    /// (an add, a ReLU) moves ~1 element/ns, GELU, tanh and the sigmoid ~4×
    /// slower.
    enum Grain {
        static let cheap = 32_768
        static let costly = 8_192
    }

    // MARK: - Bias

    /// y(N,C) = b(C) on every row (the start of y = x·Wᵀ + b).
    /// Blocks of rows over the rank's threads: a copy, so any cut gives the same bits.
    public static func broadcastRows(_ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        WorkerPool.forRanges(
            count: rows, grain: max(1, Grain.cheap / max(cols, 1)), alignment: 1, BroadcastRowsTask(b: b, y: y, cols: cols))
    }

    /// y(N,C) += b(C) on every row.
    public static func addBias(_ y: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, rows: Int, cols: Int) {
        pml_add_bias(y, b, rows, cols)
    }

    /// db(C) = beta·db + Σ_rows dy(N,C): beta 0 overwrites, 1 accumulates.
    public static func sumRows(
        _ dy: UnsafePointer<Float>, rows: Int, cols: Int, into db: UnsafeMutablePointer<Float>, beta: Float
    ) {
        // Blocks of columns over the rank's threads, each column summed over the rows in order.
        WorkerPool.forRanges(
            count: cols, grain: max(16, Grain.cheap / max(rows, 1)), SumRowsTask(dy: dy, db: db, rows: rows, cols: cols, beta: beta))
    }

    // MARK: - Activations (forward / backward pairs)

    public static func reluForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, UnaryTask(f: pml_relu_forward, x: x, y: y))
    }

    /// dx = dy where x > 0 (PyTorch's convention: zero gradient at 0).
    public static func reluBackward(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, BinaryTask(f: pml_relu_backward, a: x, b: dy, y: dx))
    }

    /// Exact GELU, x·Φ(x), as torch.nn.GELU() (-0 below x = -13, where Φ < 1e-38).
    public static func geluForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.costly, UnaryTask(f: pml_gelu_forward, x: x, y: y))
    }

    /// d/dx x·Φ(x) = Φ(x) + x·φ(x).
    /// GELU forward that also writes its derivative at x into `d` (training).
    public static func geluForward(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, derivative d: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.costly, UnaryPairTask(f: pml_gelu_forward_train, x: x, y: y, d: d))
    }

    /// dx = dy · d with d from `geluForward(_:_:derivative:count:)`.
    public static func geluBackward(derivative d: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, BinaryTask(f: pml_gelu_backward_cached, a: d, b: dy, y: dx))
    }

    public static func geluBackward(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.costly, BinaryTask(f: pml_gelu_backward, a: x, b: dy, y: dx))
    }

    public static func tanhForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.costly, UnaryTask(f: pml_tanh_forward, x: x, y: y))
    }

    /// Uses the saved output: d tanh = 1 − y².
    public static func tanhBackward(
        _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, BinaryTask(f: pml_tanh_backward, a: y, b: dy, y: dx))
    }

    public static func sigmoidForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.costly, UnaryTask(f: pml_sigmoid_forward, x: x, y: y))
    }

    /// Uses the saved output: d σ = y(1 − y).
    public static func sigmoidBackward(
        _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, BinaryTask(f: pml_sigmoid_backward, a: y, b: dy, y: dx))
    }

    // MARK: - Element-wise arithmetic

    /// y[i] = a[i] * b[i]
    public static func multiply(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, BinaryTask(f: pml_mul, a: a, b: b, y: y))
    }

    /// y[i] = a[i] + b[i]
    public static func add(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int
    ) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, BinaryTask(f: pml_add, a: a, b: b, y: y))
    }

    /// y[i] += b[i] (y must not overlap b).
    public static func addInPlace(_ y: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, AddInPlaceTask(y: y, b: b))
    }

    /// x[i] *= s
    public static func scale(_ x: UnsafeMutablePointer<Float>, by s: Float, count n: Int) {
        WorkerPool.forRanges(count: n, grain: Grain.cheap, ScaleTask(x: x, s: s))
    }

    /// Σ x², summed in 16 fixed lanes then across them in order: the same
    /// result on every CPU, and vectorised where a plain loop would not be.
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        pml_sum_squares(x, n)
    }

    /// Whether every x[i] is finite, in one vectorised pass.
    public static func allFinite(_ x: UnsafePointer<Float>, count n: Int) -> Bool {
        pml_nonfinite_probe(x, n) == 0
    }

    /// 0 when every x[i] is finite, NaN otherwise: a value that a sum over
    /// ranks keeps NaN when any rank's part is not finite.
    /// In ranges over the rank's threads: a step's whole gradient arena is
    /// probed on both cores, not on one while the other waits.
    public static func nonFiniteProbe(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        let parts = WorkerPool.partLimit(count: n, grain: Grain.cheap)
        if parts <= 1 { return pml_nonfinite_probe(x, n) }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: parts) { out in
            guard let found = out.baseAddress else { return pml_nonfinite_probe(x, n) }
            found.initialize(repeating: 0, count: parts)  // a part whose range is empty stays 0
            WorkerPool.forRanges(count: n, grain: Grain.cheap, parts: parts, NonFiniteProbeTask(x: x, found: found))
            var probe: Float = 0
            for p in 0..<parts { probe += found[p] }
            return probe
        }
    }

    // MARK: - LayerNorm

    /// Layer normalisation of rows (rows, cols); mean and rstd (rows) are
    /// kept for backward. Row sums in 16 fixed lanes (pml_layer_norm_forward).
    public static func layerNormForward(
        _ x: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, eps: Float,
        _ y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        rows: Int, cols: Int
    ) {
        // Each row on its own: blocks of rows over the rank's threads.
        WorkerPool.forRanges(
            count: rows, grain: max(1, Grain.costly / max(cols, 1)), alignment: 1,
            LayerNormForwardTask(x: x, gamma: gamma, beta: beta, eps: eps, y: y, mean: mean, rstd: rstd, cols: cols))
    }

    /// dx from dy; dγ and dβ are accumulated (+=) so micro-batches can add up.
    public static func layerNormBackward(
        _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, mean: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, gamma: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
        dgamma: UnsafeMutablePointer<Float>, dbeta: UnsafeMutablePointer<Float>, rows: Int, cols: Int
    ) {
        let rowGrain = max(1, Grain.costly / max(cols, 1))
        guard WorkerPool.partLimit(count: rows, grain: rowGrain) > 1 else {
            pml_layer_norm_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols)
            return
        }
        // Threads: dx by blocks of rows, then dγ, dβ by blocks of columns
        // (each column summed over the rows in order): the fused kernel's bits.
        WorkerPool.forRanges(
            count: rows, grain: rowGrain, alignment: 1,
            LayerNormInputGradientTask(dy: dy, x: x, mean: mean, rstd: rstd, gamma: gamma, dx: dx, cols: cols))
        WorkerPool.forRanges(
            count: cols, grain: 16,
            LayerNormParameterGradientTask(dy: dy, x: x, mean: mean, rstd: rstd, dgamma: dgamma, dbeta: dbeta, rows: rows, cols: cols))
    }

    // MARK: - BatchNorm (x (n, c, s): channel ch is n·s values; see pml_kernels.h)

    /// Per channel over the piece: sum = Σx, m2 = Σ(x − x̄)² around the piece's mean.
    public static func batchNormMoments(
        _ x: UnsafePointer<Float>, n: Int, c: Int, s: Int, sum: UnsafeMutablePointer<Float>, m2: UnsafeMutablePointer<Float>
    ) {
        pml_batch_norm_moments(x, n, c, s, sum, m2)
    }

    /// y = x·scale[ch] + shift[ch].
    public static func batchNormApply(
        _ x: UnsafePointer<Float>, n: Int, c: Int, s: Int, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
        _ y: UnsafeMutablePointer<Float>
    ) {
        pml_batch_norm_apply(x, n, c, s, scale, shift, y)
    }

    /// Per channel: Σdy and Σdy·(x − mean).
    public static func batchNormGradientSums(
        _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, n: Int, c: Int, s: Int, mean: UnsafePointer<Float>,
        sumDy: UnsafeMutablePointer<Float>, sumDyX: UnsafeMutablePointer<Float>
    ) {
        pml_batch_norm_grad_sums(dy, x, n, c, s, mean, sumDy, sumDyX)
    }

    /// dx = a·(dy − meanDy − (x − mean)·b), per channel.
    public static func batchNormInputGradient(
        _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, n: Int, c: Int, s: Int, mean: UnsafePointer<Float>,
        a: UnsafePointer<Float>, meanDy: UnsafePointer<Float>, b: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>
    ) {
        pml_batch_norm_input_grad(dy, x, n, c, s, mean, a, meanDy, b, dx)
    }

    // MARK: - 16-bit wire formats (1: bfloat16, 2: IEEE half)

    /// out = q(w), error += w − q(w), rounding to nearest even.
    public static func wireEncode(
        _ format: Int32, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, error: UnsafeMutablePointer<Float>, count: Int
    ) {
        pml_wire_encode(format, w, out, error, count)
    }

    /// w = q⁻¹(in), or w += it.
    public static func wireDecode(_ format: Int32, _ input: UnsafePointer<UInt16>, _ w: UnsafeMutablePointer<Float>, adding: Bool, count: Int) {
        pml_wire_decode(format, input, w, adding ? 1 : 0, count)
    }

    // MARK: - Losses

    /// One loss term and its gradient's scale with sample weight
    /// `weights[i]` applied (term·w, scale·w); unchanged without weights.
    @inline(__always)
    public static func sampleWeighted(_ term: Float, scale: Float, _ weights: UnsafePointer<Float>?, _ i: Int) -> (term: Float, scale: Float) {
        guard let weights else { return (term, scale) }
        let w = weights[i]
        return (term * w, scale * w)
    }

    /// Softmax cross-entropy over rows of logits(N,C) with class-index targets(N).
    /// Returns Σ_rows −log p[target] · scale and writes dlogits = (p − onehot)·scale.
    /// `correct` receives how many rows have their target as the arg-max.
    /// Targets must be validated integers in [0, C).
    ///
    /// With class weights w (C values) and label smoothing ε, as torch's
    /// cross_entropy: a row adds (1−ε)·w[t]·(lse − z[t]) + ε/C·Σ_c w[c]·(lse − z[c])
    /// (w = 1 without weights), and its gradient is
    /// ((1−ε)·w[t] + ε/C·Σw)·p − (1−ε)·w[t]·onehot − ε/C·w, times scale.
    /// Both reduce to the plain form, bit for bit, at w = 1 and ε = 0.
    /// With `rowWeights` (per-sample weights s, one per `rowsPerWeight`
    /// rows: a sequence's positions share their sample's), row r's loss and
    /// gradient are also multiplied by s[r / rowsPerWeight].
    public static func softmaxCrossEntropy(
        _ logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, cols: Int, scale: Float,
        classWeights: [Float]? = nil, smoothing: Float = 0, rowWeights: UnsafePointer<Float>? = nil, rowsPerWeight: Int = 1,
        dlogits: UnsafeMutablePointer<Float>?, correct: inout Int
    ) -> Float {
        var total: Float = 0
        let smooth = smoothing / Float(max(cols, 1))
        var weightSum = Float(cols)
        if let classWeights { weightSum = classWeights.reduce(0, +) }
        for r in 0..<rows {
            let lr = logits + r * cols
            let t = Int(targets[r])
            var mx = lr[0]
            var arg = 0
            for c in 1..<max(cols, 1) where lr[c] > mx {
                mx = lr[c]
                arg = c
            }
            if arg == t { correct += 1 }
            var z: Float = 0
            for c in 0..<cols { z += expf(lr[c] - mx) }
            let logZ = logf(z) + mx
            let wt = classWeights?[t] ?? 1
            var rowLoss = (1 - smoothing) * wt * (logZ - lr[t])
            if smoothing > 0 {
                var weighted: Float = 0  // Σ_c w[c]·z[c]
                if let classWeights {
                    for c in 0..<cols { weighted += classWeights[c] * lr[c] }
                } else {
                    for c in 0..<cols { weighted += lr[c] }
                }
                rowLoss += smooth * (weightSum * logZ - weighted)
            }
            // A sample weight scales the row's whole term (torch's reduction='none', then weighted).
            let (weightedLoss, rowScale) = sampleWeighted(rowLoss, scale: scale, rowWeights, r / rowsPerWeight)
            total += weightedLoss
            if let dlogits {
                let dr = dlogits + r * cols
                let invZ = 1 / z
                let a = (1 - smoothing) * wt + smooth * weightSum
                for c in 0..<cols { dr[c] = (a * (expf(lr[c] - mx) * invZ) - smooth * (classWeights?[c] ?? 1)) * rowScale }
                dr[t] -= (1 - smoothing) * wt * rowScale
            }
        }
        return total * scale
    }

    /// Sigmoid + binary cross-entropy on logits x with targets y in [0, 1]
    /// (torch's binary_cross_entropy_with_logits, its stable form): an
    /// element adds (1−y)·x + (1 + (p−1)·y)·(log(1 + e^−|x|) + max(−x, 0)),
    /// p the pos_weight of its output (`count` elements, `outputs` per row;
    /// p = 1 without weights). Writes dx = (σ(x)·(p·y + 1 − y) − p·y)·scale.
    /// `correct` counts elements whose sign (x > 0) matches y > 0.5.
    /// With `rowWeights` (one per `elementsPerWeight` elements: a sample's
    /// outputs), element i's term and gradient are multiplied by
    /// rowWeights[i / elementsPerWeight].
    public static func binaryCrossEntropyWithLogits(
        _ x: UnsafePointer<Float>, targets y: UnsafePointer<Float>, count n: Int, outputs: Int, positiveWeights: [Float]?,
        scale: Float, rowWeights: UnsafePointer<Float>? = nil, elementsPerWeight: Int = 1, dx: UnsafeMutablePointer<Float>?,
        correct: inout Int
    ) -> Float {
        var total: Float = 0
        for i in 0..<n {
            let xi = x[i], yi = y[i]
            let p = positiveWeights?[i % max(outputs, 1)] ?? 1
            if (xi > 0) == (yi > 0.5) { correct += 1 }
            let (term, s) = sampleWeighted(
                (1 - yi) * xi + (1 + (p - 1) * yi) * (log1pf(expf(-abs(xi))) + max(-xi, 0)), scale: scale, rowWeights, i / elementsPerWeight)
            total += term
            if let dx {
                let e = expf(-abs(xi))
                let sigmoid = xi >= 0 ? 1 / (1 + e) : e / (1 + e)
                dx[i] = (sigmoid * (p * yi + 1 - yi) - p * yi) * s
            }
        }
        return total * scale
    }

    /// Returns Σ (p − t)² · scale and writes dp = 2(p − t)·scale. With
    /// `rowWeights` (one per `elementsPerWeight` elements), element i's
    /// term and gradient are multiplied by rowWeights[i / elementsPerWeight].
    public static func meanSquaredError(
        _ p: UnsafePointer<Float>, targets: UnsafePointer<Float>, count n: Int, scale: Float,
        rowWeights: UnsafePointer<Float>? = nil, elementsPerWeight: Int = 1, dp: UnsafeMutablePointer<Float>?
    ) -> Float {
        var total: Float = 0
        if let rowWeights {
            for i in 0..<n {
                let d = p[i] - targets[i], w = rowWeights[i / elementsPerWeight]
                total += w * (d * d)
                dp?[i] = 2 * d * (scale * w)
            }
            return total * scale
        }
        for i in 0..<n {
            let d = p[i] - targets[i]
            total += d * d
            dp?[i] = 2 * d * scale
        }
        return total * scale
    }
}
