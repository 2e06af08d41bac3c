import ParmlModel
import ParmlParallel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

/// What each rank computed; rank r writes slot r only, the host reads after
/// the pool's run returned (its mutex orders the accesses).
private final class Results: @unchecked Sendable {
    var loss: [Float]
    var correct: [Int]
    var gradient: [[Float]]
    init(_ n: Int) {
        loss = Array(repeating: 0, count: n)
        correct = Array(repeating: 0, count: n)
        gradient = Array(repeating: [], count: n)
    }
}

struct ShardedCrossEntropyTests {
    /// 7 rows of 8 classes: random rows, a row whose maximum appears in two
    /// shards (serial's arg-max is the first), a row whose logits span ±80
    /// (exp of the spread overflows without the global max), a row of
    /// equal logits. Each rank sees its columns only.
    private func logits() -> (values: [Float], targets: [Float], rows: Int, classes: Int) {
        let rows = 7, classes = 8
        var z = randomArray(rows * classes, seed: 3, low: -4, high: 4)
        for c in 0..<classes { z[4 * classes + c] = 0 }
        z[4 * classes + 1] = 3
        z[4 * classes + 6] = 3
        for c in 0..<classes { z[5 * classes + c] = c == 5 ? 80 : -80 }
        for c in 0..<classes { z[6 * classes + c] = 0.5 }
        // Row 4's target is the tie's first class: a loss that let the
        // later shard win would count one hit fewer than serial.
        let targets: [Float] = [0, 3, 7, 4, 1, 5, 2]
        return (z, targets, rows, classes)
    }

    /// Plain, with class weights and label smoothing (torch's weight=
    /// and label_smoothing=; the smoothing term adds a float per row), and
    /// with per-sample weights on top of both (weighted 2).
    @Test(arguments: [2, 4], [0, 1, 2])
    func matchesTheWholeLossWithinRounding(tp: Int, weighted: Int) throws {
        let (z, targets, rows, classes) = logits()
        var options = LossOptions()
        if weighted > 0 {
            options.classWeights = [0.5, 1, 2, 0.25, 1.5, 3, 1, 0.75]
            options.labelSmoothing = 0.1
        }
        let sampleWeights: [Float]? = weighted == 2 ? [1, 0.5, 0, 2, 1.5, 3, 0.25] : nil
        let scale = 1 / Float(rows)
        var wantCorrect = 0
        let wantGrad = try Tensor(shape: Shape(rows, classes))
        let labels = targets.map { Int32($0) }
        let wantLoss = z.withUnsafeBufferPointer { zp in
            labels.withUnsafeBufferPointer { tp in
                Kernels.softmaxCrossEntropy(
                    zp.baseAddress!, targets: tp.baseAddress!, rows: rows, cols: classes, scale: scale,
                    classWeights: options.classWeights, smoothing: options.labelSmoothing, rowWeights: sampleWeights, dlogits: wantGrad.data,
                    correct: &wantCorrect)
            }
        }
        let local = classes / tp
        let world = try ThreadsWorld(size: tp, timeout: 10, name: "tp")
        let pool = try RankPool(size: tp)
        let results = Results(tp)
        try pool.run(world: world) { r in
            var mine: [Float] = []
            for row in 0..<rows {
                let start: Int = row * classes + r * local
                mine += z[start..<(start + local)]
            }
            let loss = ShardedCrossEntropy(classOffset: r * local, comm: world.communicator(rank: r))
            let got = try loss.compute(
                output: try Tensor(mine, shape: Shape(rows, local)), targets: try Tensor(targets, shape: Shape(rows)), scale: scale,
                options: options, sampleWeights: sampleWeights, wantGradient: true)
            results.loss[r] = got.loss
            results.correct[r] = got.correct
            results.gradient[r] = loss.gradient.toArray()
        }
        let want = wantGrad.toArray()
        for r in 0..<tp {
            #expect(results.loss[r].bitPattern == results.loss[0].bitPattern, "rank \(r) loss differs from rank 0's")
            #expect(abs(results.loss[r] - wantLoss) <= 1e-6 * abs(wantLoss), "rank \(r): \(results.loss[r]) vs \(wantLoss)")
            #expect(results.correct[r] == wantCorrect, "rank \(r): \(results.correct[r]) correct vs \(wantCorrect)")
            for row in 0..<rows {
                for c in 0..<local {
                    let g = results.gradient[r][row * local + c], w = want[row * classes + r * local + c]
                    #expect(abs(g - w) <= 1e-7, "rank \(r) row \(row) class \(r * local + c): \(g) vs \(w)")
                }
            }
        }
    }
}
