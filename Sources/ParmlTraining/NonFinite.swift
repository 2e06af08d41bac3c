import ParmlModel
import ParmlTensor

/// Where a skipped step's non-finite values showed up on one rank, in the
/// order a value travels through a step: the inputs, then parameters (a
/// model already poisoned), the loss (an activation overflowed), then the
/// gradients from the last layer back.
struct NonFiniteFinding: Comparable {
    /// 0 inputs, 1 parameters, 2 loss, 3 gradients.
    let stage: Int
    /// Ordering within a stage: a sample or layer index.
    let position: Int
    let rank: Int
    let text: String

    static func < (a: NonFiniteFinding, b: NonFiniteFinding) -> Bool {
        (a.stage, a.position, a.rank) < (b.stage, b.position, b.rank)
    }

    static func == (a: NonFiniteFinding, b: NonFiniteFinding) -> Bool {
        (a.stage, a.position, a.rank) == (b.stage, b.position, b.rank)
    }
}

extension RankContext {
    /// Whether every rank's loss and gradients are finite, agreed by all.
    /// Runs before the update reads the gradients (and before clipping
    /// spreads a NaN over every one): each rank's probe is 0 (finite) or
    /// NaN, and the ranks sum them, so all take the same branch. The global
    /// norm, when clipping computed it, already answers for the gradients.
    func agreeFinite(lossSum: Float, gradientNorm: Float?) throws -> Bool {
        guard let grads = model.gradients else { throw ParmlError.internal("rank \(rank) has no gradient arena") }
        let gradients = gradientNorm.map { $0 * 0 }
            ?? ownedRanges.reduce(0) { $0 + Kernels.nonFiniteProbe(grads.data + $1.lowerBound, count: $1.count) }
        var probe = gradients + lossSum * 0
        if let comms {
            stats.data[2] = probe
            try comms.world.allReduce(stats.data + 2, count: 1, op: .sum)
            probe = stats.data[2]
        }
        return probe == 0
    }

    /// A skipped step's slow path: where this rank's inputs, parameters,
    /// loss or gradients stopped being finite, or nil when its part was.
    func findNonFinite(x: Tensor, lossSum: Float) -> NonFiniteFinding? {
        let layers = model.root.layers
        func layerName(_ l: Int) -> String { "layer \(l) (\(layers[l].kind))" }
        if holdsInput, !Kernels.allFinite(x.data, count: x.count) {
            let row = x.shape.rowSize
            let sample = (0..<x.shape[0]).first { !Kernels.allFinite(x.data + $0 * row, count: row) } ?? 0
            return NonFiniteFinding(stage: 0, position: sample, rank: rank, text: "the inputs hold a NaN or an infinity (sample \(sample) of the batch)")
        }
        guard let params = model.parameters, let grads = model.gradients else { return nil }
        for vs in virtualStages {
            for l in vs.layers {
                let r = model.parameterRange(ofTopLevelLayers: l..<(l + 1))
                if !Kernels.allFinite(params.data + r.lowerBound, count: r.count) {
                    return NonFiniteFinding(stage: 1, position: l, rank: rank, text: "the parameters of \(layerName(l)) hold a NaN or an infinity")
                }
            }
        }
        if holdsLoss, !lossSum.isFinite {
            return NonFiniteFinding(
                stage: 2, position: 0, rank: rank,
                text: "the loss is \(lossSum) with finite inputs and parameters (an activation or the loss overflowed)")
        }
        for vs in virtualStages.reversed() {
            for l in vs.layers.reversed() {
                let r = model.parameterRange(ofTopLevelLayers: l..<(l + 1)).clamped(to: vs.owned)
                if !r.isEmpty, !Kernels.allFinite(grads.data + r.lowerBound, count: r.count) {
                    return NonFiniteFinding(
                        stage: 3, position: layers.count - l, rank: rank, text: "the gradient of \(layerName(l)) holds a NaN or an infinity")
                }
            }
        }
        return nil
    }
}
