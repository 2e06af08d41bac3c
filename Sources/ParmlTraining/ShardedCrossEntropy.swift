#if canImport(Glibc)
import Glibc
#endif
import ParmlModel
import ParmlParallel
import ParmlTensor

/// Softmax cross-entropy on logits split by class over the tp ranks (a
/// column-parallel classifier, Megatron's vocabulary-parallel loss): each
/// rank holds classes `classOffset ..< classOffset + local` of every row and
/// the whole logits are never gathered. Per micro-batch, two all-reduces
/// over the tp group:
///
/// 1. every rank's row maxima and their arg-max (N·tp·2 floats, each rank
///    writing its own column, zeros elsewhere, so the sum is an exact
///    gather): the global max M, subtracted before exp as serial training
///    does, and the global arg-max (the first class holding M, as serial);
/// 2. Σ exp(z − M) over the rank's classes and the target's logit from the
///    rank holding it (N·2 floats).
///
/// Every exp is the one serial training computes (same M); only Σ exp is
/// added in another order (per rank, then over ranks), so loss and gradient
/// match serial within float rounding, and every tp rank gets the same bits.
/// Label smoothing adds a third float per row to the second all-reduce:
/// Σ w[c]·z[c] over the rank's classes (class weights are whole on every rank).
final class ShardedCrossEntropy {
    let classOffset: Int
    let comm: Communicator
    /// Floats all-reduced so far (tensor-parallel traffic).
    private(set) var floatsReduced = 0
    private let grad = Buffer()
    private let maxima = Buffer()
    private let sums = Buffer()
    private let labels = Buffer()

    init(classOffset: Int, comm: Communicator) {
        self.classOffset = classOffset
        self.comm = comm
    }

    /// Loss (scaled sum over rows) and arg-max hits, as `Loss.compute`;
    /// `output` holds this rank's classes, `targets` whole class indices,
    /// `options` the loss's weights and smoothing, `sampleWeights` one per
    /// sample (a sequence's positions share it), as Kernels.softmaxCrossEntropy.
    func compute(
        output: Tensor, targets: Tensor, scale: Float, options: LossOptions, sampleWeights: UnsafePointer<Float>? = nil,
        wantGradient: Bool
    ) throws -> (loss: Float, correct: Int) {
        let cols = output.shape[output.shape.rank - 1], rows = output.count / max(cols, 1)
        let ranks = comm.size, me = comm.rank
        // tp divides the classifier's classes, so every rank holds `cols`.
        let classes = cols * ranks, w = options.classWeights, eps = options.labelSmoothing
        let smooth = eps / Float(classes), width = eps > 0 ? 3 : 2
        let weightSum = w?.reduce(0, +) ?? Float(classes)
        guard rows > 0 else { return (0, 0) }
        let z = output.data, y = try classIndices(targets, into: labels)

        let m = try maxima.shaped(Shape(rows, ranks, 2))
        m.data.update(repeating: 0, count: m.count)
        for r in 0..<rows {
            let zr = z + r * cols
            var mx = zr[0], arg = 0
            for c in 1..<max(cols, 1) where zr[c] > mx {
                mx = zr[c]
                arg = c
            }
            m.data[(r * ranks + me) * 2] = mx
            m.data[(r * ranks + me) * 2 + 1] = Float(classOffset + arg)
        }
        try comm.allReduce(m.data, count: m.count, op: .sum)

        let s = try sums.shaped(Shape(rows, width))
        var correct = 0
        for r in 0..<rows {
            let mr = m.data + r * ranks * 2
            // Ranks hold classes in order, so the first strictly larger
            // maximum gives the first arg-max over all classes.
            var mx = mr[0], arg = mr[1]
            for k in 1..<ranks where mr[2 * k] > mx {
                mx = mr[2 * k]
                arg = mr[2 * k + 1]
            }
            mr[0] = mx
            if Int(arg) == Int(y[r]) { correct += 1 }
            let zr = z + r * cols
            var e: Float = 0
            for c in 0..<cols { e += expf(zr[c] - mx) }
            s.data[width * r] = e
            let t = Int(y[r]) - classOffset
            s.data[width * r + 1] = t >= 0 && t < cols ? zr[t] : 0
            if eps > 0 {
                var weighted: Float = 0
                for c in 0..<cols { weighted += (w?[classOffset + c] ?? 1) * zr[c] }
                s.data[width * r + 2] = weighted
            }
        }
        try comm.allReduce(s.data, count: s.count, op: .sum)
        floatsReduced += m.count + s.count

        var total: Float = 0
        let g = wantGradient ? try grad.shaped(output.shape) : nil
        let perSample = max(rows / max(output.shape[0], 1), 1)
        // The terms of Kernels.softmaxCrossEntropy (its comment has the formula).
        for r in 0..<rows {
            let mx = m.data[r * ranks * 2]
            let sum = s.data[width * r]
            let lse = logf(sum) + mx
            let wt = w?[Int(y[r])] ?? 1
            var rowLoss = (1 - eps) * wt * (lse - s.data[width * r + 1])
            if eps > 0 { rowLoss += smooth * (weightSum * lse - s.data[width * r + 2]) }
            let (weightedLoss, rowScale) = Kernels.sampleWeighted(rowLoss, scale: scale, sampleWeights, r / perSample)
            total += weightedLoss
            if let g {
                let zr = z + r * cols, gr = g.data + r * cols
                let inv = 1 / sum
                let a = (1 - eps) * wt + smooth * weightSum
                for c in 0..<cols { gr[c] = (a * (expf(zr[c] - mx) * inv) - smooth * (w?[classOffset + c] ?? 1)) * rowScale }
                let t = Int(y[r]) - classOffset
                if t >= 0 && t < cols { gr[t] -= (1 - eps) * wt * rowScale }
            }
        }
        return (total * scale, correct)
    }

    /// The gradient written by the last `compute(wantGradient: true)`.
    var gradient: Tensor { grad.tensor }
}
