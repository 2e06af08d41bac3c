import ParmlTensor

/// Per-sample loss weights (Keras's `sample_weight=`): one finite weight
/// >= 0 per sample, at least one above 0. They ride with the samples: a
/// batch's weights are the weights of the samples the batcher put in it.
public enum SampleWeights {
    /// Throws `.invalidArgument` naming the first bad weight, a count
    /// other than `samples`, or weights that are all 0 (`what` names them).
    public static func validate(_ w: UnsafeBufferPointer<Float>, samples: Int, what: String = "sample weights") throws {
        guard w.count == samples else {
            throw ParmlError.invalidArgument("\(what): \(w.count) weights for \(samples) samples; give one per sample")
        }
        var any = false
        for i in 0..<w.count {
            guard w[i].isFinite, w[i] >= 0 else {
                throw ParmlError.invalidArgument("\(what): weight \(i) is \(w[i]); weights must be finite and >= 0")
            }
            if w[i] > 0 { any = true }
        }
        guard any else { throw ParmlError.invalidArgument("\(what): every weight is 0, so the weighted mean is undefined") }
    }
}

extension Dataset {
    /// A dataset of the same samples (the tensors are shared, not copied)
    /// carrying `weights`, one per sample (validated); nil: none. The
    /// augmentation and class names come along.
    public func withSampleWeights(_ weights: [Float]?) throws -> Dataset {
        if let weights { try weights.withUnsafeBufferPointer { try SampleWeights.validate($0, samples: count) } }
        let d = try Dataset(inputs: inputs, targets: targets)
        d.classNames = classNames
        try d.setAugmentation(augmentation)
        d.sampleWeights = weights
        return d
    }
}

extension Batcher {
    /// The sample weights of batch `batch`'s rows `rows` (in the order
    /// `fill` copies their samples) into `weights`, resized to (rows.count);
    /// false, and `weights` untouched, when the dataset has none.
    public func fillWeights(batch: Int, rows: Range<Int>, weights: Tensor) throws -> Bool {
        guard let w = dataset.sampleWeights else { return false }
        guard batch >= 0, batch < batchCount, rows.lowerBound >= 0, rows.upperBound <= size(ofBatch: batch) else {
            throw ParmlError.invalidArgument("rows \(rows) are not part of batch \(batch)")
        }
        try weights.resize(Shape(rows.count))
        let first = batch * batchSize + rows.lowerBound
        for r in 0..<rows.count { weights.data[r] = w[sampleOrder[first + r]] }
        return true
    }
}
