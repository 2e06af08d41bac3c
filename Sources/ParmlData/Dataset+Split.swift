import ParmlTensor

/// A train/validation split of an in-memory dataset, optionally stratified
/// (each class keeps its share in both parts, as scikit-learn's
/// train_test_split(stratify=y) aims for).
extension Dataset {
    /// Which rows go to validation: round(n·fraction) (halves up) of each
    /// class's n rows (stratified), or of all rows, picked by a Fisher–Yates shuffle
    /// of that group's rows on a Philox stream of `seed`. Both parts keep
    /// the dataset's order. Stratified needs (N) class-index targets.
    public func splitRows(validationFraction f: Double, seed: UInt64, stratified: Bool) throws -> (train: [Int], validation: [Int]) {
        guard f > 0, f < 1 else { throw ParmlError.invalidArgument("validation_fraction must be in (0, 1), got \(f)") }
        var groups: [[Int]]
        if stratified {
            guard targets.shape.rank == 1, let classes = numClasses else {
                throw ParmlError.invalidArgument(
                    "a stratified split needs one class index per sample; these targets are \(targets.shape) \(targets.dtype.name) values")
            }
            groups = Array(repeating: [], count: classes)
            for i in 0..<count {
                let c = targets.dtype == .int32 ? Int(targets.int32s[i]) : Int(targets.data[i])
                groups[c].append(i)
            }
        } else {
            groups = [Array(0..<count)]
        }
        var validation = [Bool](repeating: false, count: count)
        for (g, rows) in groups.enumerated() where !rows.isEmpty {
            var rows = rows
            var draws = DrawSequence(rng: Philox(seed: seed), stream: RandomStream.split(group: stratified ? g + 1 : 0))
            var i = rows.count - 1
            while i > 0 {
                rows.swapAt(i, Int(draws.below(UInt64(i + 1))))
                i -= 1
            }
            let k = Int((Double(rows.count) * f).rounded())
            for r in rows.prefix(k) { validation[r] = true }
        }
        let v = (0..<count).filter { validation[$0] }, t = (0..<count).filter { !validation[$0] }
        guard !v.isEmpty, !t.isEmpty else {
            throw ParmlError.invalidArgument(
                "validation_fraction \(f) of \(count) samples leaves \(v.isEmpty ? "validation" : "training") empty")
        }
        return (t, v)
    }

    /// A new dataset holding copies of `rows` (in that order), with their sample weights.
    public func subset(_ rows: [Int]) throws -> Dataset {
        let x = try Tensor(shape: inputs.shape.withLeading(rows.count), dtype: inputs.dtype)
        let y = try Tensor(shape: targets.shape.withLeading(rows.count), dtype: targets.dtype)
        try rows.withUnsafeBufferPointer { try copy(samples: $0, epoch: 0, inputs: x, targets: y) }
        let part = try Dataset(inputs: x, targets: y)
        part.classNames = classNames
        part.sampleWeights = sampleWeights.map { w in rows.map { w[$0] } }  // the weights follow their samples
        return part
    }

    /// Training and validation datasets from `splitRows` (copies of the rows).
    public func split(validationFraction f: Double, seed: UInt64, stratified: Bool) throws -> (train: Dataset, validation: Dataset) {
        let (t, v) = try splitRows(validationFraction: f, seed: seed, stratified: stratified)
        return (try subset(t), try subset(v))
    }
}
