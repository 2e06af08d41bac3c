import ParmlData
import ParmlModel
import ParmlTensor

/// Counts of a classifier's predictions over a dataset, and what follows
/// from them (per-class precision, recall and F1 with macro and weighted
/// averages), as scikit-learn defines them.
///
/// Single-label (cross-entropy): a prediction is a row of logits (one per
/// sample, or per position of a sequence's (N, T, C)); its class is the
/// first arg-max; `confusion` is the (C, C) matrix.
/// Multi-label (binary cross-entropy): each output is a label predicted
/// present when its logit is > 0 and present in the target when the target
/// is > 0.5 (the rule of `evaluate`'s accuracy); `confusion` is scikit-learn's
/// multilabel_confusion_matrix, (L, 2, 2) of [[tn, fp], [fn, tp]].
public struct ClassificationMetrics: Sendable {
    public let classes: Int
    public let topK: Int
    public let multiLabel: Bool
    /// Single-label: confusion[t · classes + p], predictions of class p whose
    /// target is t. Multi-label: confusion[l · 4 + 2 · target + predicted].
    public private(set) var confusion: [Int]
    /// Predictions whose target is among the k largest logits (ties broken
    /// by class index, as the arg-max is); single-label only.
    public private(set) var topKCorrect = 0
    /// Mean loss over the dataset (as `Trainer.evaluate`).
    public internal(set) var loss: Float = .nan

    public init(classes: Int, topK: Int, multiLabel: Bool = false) throws {
        guard classes >= 1 else { throw ParmlError.invalidArgument("metrics need at least one class, got \(classes)") }
        guard topK >= 1 else { throw ParmlError.invalidArgument("top_k must be >= 1, got \(topK)") }
        self.classes = classes
        self.topK = topK
        self.multiLabel = multiLabel
        confusion = Array(repeating: 0, count: multiLabel ? classes * 4 : classes * classes)
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

    /// Adds rows of `logits` (…, labels) with their validated [0, 1] targets (multi-label).
    public mutating func add(logits: Tensor, labelTargets: UnsafePointer<Float>) {
        for i in 0..<logits.count {
            let t = labelTargets[i] > 0.5 ? 1 : 0, p = logits.data[i] > 0 ? 1 : 0
            confusion[(i % classes) * 4 + 2 * t + p] += 1
        }
    }

    private func count(_ c: Int, target: Int, predicted: Int) -> Int { confusion[c * 4 + 2 * target + predicted] }
    private func truePositives(_ c: Int) -> Int { multiLabel ? count(c, target: 1, predicted: 1) : confusion[c * classes + c] }

    /// Single-label: predictions (rows). Multi-label: label decisions (rows · labels), as `evaluate` counts them.
    public var predictions: Int { confusion.reduce(0, +) }
    /// Predictions that match their target (multi-label: each label decision, 1 − Hamming loss).
    public var correct: Int {
        (0..<classes).reduce(0) { $0 + (multiLabel ? count($1, target: 0, predicted: 0) : 0) + truePositives($1) }
    }
    public var accuracy: Double { Double(correct) / Double(predictions) }
    /// NaN for multi-label, which has no ranking of one answer.
    public var topKAccuracy: Double { multiLabel ? .nan : Double(topKCorrect) / Double(predictions) }

    /// Predictions whose target is class c (multi-label: rows where label c is present).
    public func support(_ c: Int) -> Int {
        multiLabel ? count(c, target: 1, predicted: 0) + count(c, target: 1, predicted: 1) : (0..<classes).reduce(0) { $0 + confusion[c * classes + $1] }
    }
    /// Predictions of class c (multi-label: rows where label c is predicted).
    public func predicted(_ c: Int) -> Int {
        multiLabel ? count(c, target: 0, predicted: 1) + count(c, target: 1, predicted: 1) : (0..<classes).reduce(0) { $0 + confusion[$1 * classes + c] }
    }

    /// 0 where the denominator is 0 (scikit-learn's zero_division default).
    private func ratio(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : Double(a) / Double(b) }

    public func precision(_ c: Int) -> Double { ratio(truePositives(c), predicted(c)) }
    public func recall(_ c: Int) -> Double { ratio(truePositives(c), support(c)) }
    /// 2·tp / (2·tp + fp + fn): the harmonic mean of precision and recall where both are defined.
    public func f1(_ c: Int) -> Double { ratio(2 * truePositives(c), support(c) + predicted(c)) }

    /// Unweighted mean over the classes that occur as a target or a
    /// prediction (scikit-learn's average="macro" with its default labels:
    /// for multi-label targets, every label).
    public var macro: (precision: Double, recall: Double, f1: Double) {
        let seen = (0..<classes).filter { multiLabel || support($0) > 0 || predicted($0) > 0 }
        guard !seen.isEmpty else { return (0, 0, 0) }
        let n = Double(seen.count)
        return (
            seen.reduce(0) { $0 + precision($1) } / n, seen.reduce(0) { $0 + recall($1) } / n, seen.reduce(0) { $0 + f1($1) } / n
        )
    }

    /// Mean weighted by each class's support (average="weighted").
    public var weighted: (precision: Double, recall: Double, f1: Double) {
        let total = Double((0..<classes).reduce(0) { $0 + support($1) })
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
    /// mode (the pass of `evaluate`): single-label for cross-entropy
    /// trainers, multi-label (per output) for binary cross-entropy ones.
    public func evaluateMetrics(_ data: any BatchSource, batchSize: Int, topK: Int) throws -> ClassificationMetrics {
        guard loss.kind == .crossEntropy || loss.kind == .binaryCrossEntropy else {
            throw ParmlError.invalidArgument(
                "classification metrics need a cross-entropy or binary cross-entropy trainer; this trainer's loss is \(loss.kind)")
        }
        let probe = try data.fitProbe()
        let out = try model.outputShape(for: probe.inputShape)
        let multiLabel = loss.kind == .binaryCrossEntropy
        var metrics = try ClassificationMetrics(classes: out[out.rank - 1], topK: topK, multiLabel: multiLabel)
        let labels = Buffer()
        let r = try evaluationPass(data, batchSize: batchSize) { logits, targets in
            if multiLabel {
                // evaluationPass validated them: float32 (or integer) values in [0, 1].
                var t = targets
                if targets.dtype != .float32 {
                    t = try labels.shaped(targets.shape, dtype: .float32)
                    try t.convert(from: targets, to: .float32, what: "targets")
                }
                metrics.add(logits: logits, labelTargets: t.data)
            } else {
                metrics.add(logits: logits, targets: try classIndices(targets, into: labels))
            }
        }
        metrics.loss = r.loss
        return metrics
    }
}
