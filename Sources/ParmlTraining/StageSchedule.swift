/// The order in which one pipeline stage runs the forward and backward
/// passes of a step's micro-batches.
///
/// GPipe: every forward, then every backward. 1F1B (PipeDream-flush): stage
/// s of p runs min(p−s−1, m) forwards to fill the pipe, then alternates one
/// forward and one backward, then drains the remaining backwards, so at most
/// p−s micro-batches have activations alive on it. Backwards run in
/// micro-batch order 0, 1, ... in both, so gradients are accumulated in the
/// same order whichever schedule runs.
///
/// Sends are buffered (a send returns once the data is copied), so any
/// stage order in which each stage receives in the order its neighbour
/// sends cannot deadlock; both schedules have that property for any m ≥ 1.
enum StageOp: Equatable, Sendable {
    case forward(Int)
    case backward(Int)
}

struct StageSchedule: Sendable {
    let ops: [StageOp]
    /// Micro-batches whose activations are alive at once, at most.
    let inFlight: Int

    init(kind: PipelineSchedule, stage s: Int, stages p: Int, microBatches m: Int) {
        var ops: [StageOp] = []
        switch kind {
        case .gpipe:
            for j in 0..<m { ops.append(.forward(j)) }
            for j in 0..<m { ops.append(.backward(j)) }
        case .oneForwardOneBackward:
            let warmup = min(p - s - 1, m)
            for j in 0..<warmup { ops.append(.forward(j)) }
            var nextBackward = 0
            for j in warmup..<m {
                ops.append(.forward(j))
                ops.append(.backward(nextBackward))
                nextBackward += 1
            }
            while nextBackward < m {
                ops.append(.backward(nextBackward))
                nextBackward += 1
            }
        }
        self.ops = ops
        var alive = 0
        var peak = 0
        for op in ops {
            if case .forward = op { alive += 1 } else { alive -= 1 }
            peak = max(peak, alive)
        }
        inFlight = peak
    }
}
