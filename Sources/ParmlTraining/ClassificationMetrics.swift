import ParmlData
import ParmlModel
import ParmlTensor

/// Counts of a classifier's predictions over a dataset: the confusion
/// matrix and top-k hits, and what follows from them (per-class precision,
/// recall and F1 with macro and weighted averages), as scikit-learn
/// defines them. A prediction is a row of logits (one per sample, or per
/// position of a sequence's (N, T, C)); its class is the first arg-max.
public struct ClassificationMetrics: Sendable {
    public let classes: Int
    public let topK: Int
    /// confusion[t · classes + p]: predictions of class p whose target is t.
    public private(set) var confusion: [Int]
    /// Predictions whose target is among the k largest logits (ties broken
    /// by class index, as the arg-max is).
    public private(set) var topKCorrect = 0
    /// Mean loss over the dataset (as `Trainer.evaluate`).
    public internal(set) var loss: Float = .nan

    public init(classes: Int, topK: Int) throws {
        guard classes >= 1 else { throw ParmlError.invalidArgument("metrics need at least one class, got \(classes)") }
        guard topK >= 1 else { throw ParmlError.invalidArgument("top_k must be >= 1, got \(topK)") }
        self.classes = classes
        self.topK = topK
        confusion = Array(repeating: 0, count: classes * classes)
    }

    /// Adds rows of `logits` (…, classes) with their validated class indices.
    public mutating func add(logits: Tensor, targets: UnsafePointer<Int32>) {
        let c = classes, rows = logits.count / c
        for r in 0..<rows {
            let z = logits.data + r * c, t = Int(targets[r])
            var arg = 0
            for k in 1..<c where z[k] > z[arg] { arg = k }
            confusion[t * c + arg] += 1
            // Classes ranked before the target: larger logits, or equal ones of a lower index.
            var ahead = 0
            for k in 0..<c where z[k] > z[t] || (z[k] == z[t] && k < t) { ahead += 1 }
            if ahead < topK { topKCorrect += 1 }
        }
    }

    public var predictions: Int { confusion.reduce(0, +) }
    public var correct: Int { (0..<classes).reduce(0) { $0 + confusion[$1 * classes + $1] } }
    public var accuracy: Double { Double(correct) / Double(predictions) }
    public var topKAccuracy: Double { Double(topKCorrect) / Double(predictions) }

    /// Predictions whose target is class c.
    public func support(_ c: Int) -> Int { (0..<classes).reduce(0) { $0 + confusion[c * classes + $1] } }
    /// Predictions of class c.
    public func predicted(_ c: Int) -> Int { (0..<classes).reduce(0) { $0 + confusion[$1 * classes + c] } }

    /// 0 where the denominator is 0 (scikit-learn's zero_division default).
    private func ratio(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : Double(a) / Double(b) }

    public func precision(_ c: Int) -> Double { ratio(confusion[c * classes + c], predicted(c)) }
    public func recall(_ c: Int) -> Double { ratio(confusion[c * classes + c], support(c)) }
    /// 2·tp / (2·tp + fp + fn): the harmonic mean of precision and recall where both are defined.
    public func f1(_ c: Int) -> Double {
        let tp = confusion[c * classes + c]
        return ratio(2 * tp, support(c) + predicted(c))
    }

    /// Unweighted mean over the classes that occur as a target or a
    /// prediction (scikit-learn's average="macro" with its default labels).
    public var macro: (precision: Double, recall: Double, f1: Double) {
        let seen = (0..<classes).filter { support($0) > 0 || predicted($0) > 0 }
        guard !seen.isEmpty else { return (0, 0, 0) }
        let n = Double(seen.count)
        return (
            seen.reduce(0) { $0 + precision($1) } / n, seen.reduce(0) { $0 + recall($1) } / n, seen.reduce(0) { $0 + f1($1) } / n
        )
    }

    /// Mean weighted by each class's support (average="weighted").
    public var weighted: (precision: Double, recall: Double, f1: Double) {
        let total = Double(predictions)
        guard total > 0 else { return (0, 0, 0) }
        var p = 0.0, r = 0.0, f = 0.0
        for c in 0..<classes {
            let w = Double(support(c)) / total
            p += w * precision(c)
            r += w * recall(c)
            f += w * f1(c)
        }
        return (p, r, f)
    }
}

extension Trainer {
    /// Loss, confusion matrix and top-k hits over a dataset in inference
    /// mode (the pass of `evaluate`). Cross-entropy trainers only.
    public func evaluateMetrics(_ data: any BatchSource, batchSize: Int, topK: Int) throws -> ClassificationMetrics {
        guard loss.kind == .crossEntropy else {
            throw ParmlError.invalidArgument("classification metrics need a cross-entropy trainer; this trainer's loss is \(loss.kind)")
        }
        let probe = try data.fitProbe()
        let out = try model.outputShape(for: probe.inputShape)
        var metrics = try ClassificationMetrics(classes: out[out.rank - 1], topK: topK)
        let labels = Buffer()
        let r = try evaluationPass(data, batchSize: batchSize) { logits, targets in
            metrics.add(logits: logits, targets: try classIndices(targets, into: labels))
        }
        metrics.loss = r.loss
        return metrics
    }
}
