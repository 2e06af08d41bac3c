import ParmlData
import ParmlModel
import ParmlParallel
import ParmlTensor

// Per-sample loss weights in a step: the loss is Σ weight·loss / Σ weight
// over the global batch, a prediction's weight being its sample's weight
// times its class's (class weights), so the two compose and the mean is
// the one class weights alone already define.
extension Trainer {
    /// Checks a step's weights: one finite weight >= 0 per row of `rows`.
    func checkStepWeights(_ w: Tensor, rows n: Int) throws {
        guard w.dtype == .float32, w.shape == Shape(n) else {
            throw ParmlError.shape("sample weights: \(w.shape) \(w.dtype.name) for a batch of \(n) rows; give (\(n)) float32 weights")
        }
        for i in 0..<n where !(w.data[i].isFinite && w.data[i] >= 0) {
            throw ParmlError.invalidArgument("sample weight of row \(i) is \(w.data[i]); weights must be finite and >= 0")
        }
        if privacy != nil {
            throw ParmlError.invalidArgument("sample weights with DP-SGD: per-example clipping would undo them; train without either")
        }
    }

    /// Σ of the global batch's per-sample denominators (Loss.sampleDenominators),
    /// summed in row order as a Double. Local batches gather every
    /// replica's rows first (each writes its own, zeros elsewhere: the sum
    /// is exact), so every layout and backend adds the same numbers in the
    /// same order and gets serial's total bit for bit.
    /// `gather`: these are this replica's rows of a global batch of
    /// `samples`, from `firstRow` (local batches); else the whole batch.
    func sampleWeightTotal(_ w: Tensor, targets: Tensor, output: Shape, samples: Int, firstRow: Int = 0, gather: Bool) throws -> Double {
        let n = targets.shape[0]
        let all = try sampleDenominatorScratch.shaped(Shape(max(samples, 1)))
        all.fill(0)
        if n > 0 { try loss.sampleDenominators(targets: targets, weights: w.data, output: output, into: all.data + firstRow) }
        if gather, let data = ranks.first?.comms?.data { try data.allReduce(all.data, count: samples, op: .sum) }
        var total = 0.0
        for i in 0..<samples { total += Double(all.data[i]) }
        return total
    }

    /// fit: the weights of batch `b`'s `n` rows in `batchWeights`, nil when
    /// the data has none (a replica past its local data passes 0 rows).
    func fitBatchWeights(_ batcher: Batcher, batch b: Int, rows n: Int) throws -> Tensor? {
        guard batcher.dataset.sampleWeights != nil else { return nil }
        if b >= batcher.batchCount {
            try batchWeights.resize(Shape(0))
        } else {
            _ = try batcher.fillWeights(batch: b, rows: 0..<n, weights: batchWeights)
        }
        return batchWeights
    }

    /// fit refuses sample weights where they cannot apply, before any step.
    func checkFitWeights(_ train: any BatchSource) throws {
        guard train.sampleWeights != nil else { return }
        if privacy != nil {
            throw ParmlError.invalidArgument("sample weights with DP-SGD: per-example clipping would undo them; train without either")
        }
    }

    /// evaluate: the loss scale and weight of one batch of a weighted dataset
    /// (its weights in `batchWeights`); a batch of weight 0 adds nothing.
    func evaluationWeights(_ batcher: Batcher, batch b: Int, rows n: Int, targets: Tensor, output: Shape) throws -> (scale: Float, weight: Double)? {
        guard try batcher.fillWeights(batch: b, rows: 0..<n, weights: batchWeights) else { return nil }
        let total = try sampleWeightTotal(batchWeights, targets: targets, output: output, samples: n, gather: false)
        return (total > 0 ? Float(1 / total) : 0, total)
    }
}
