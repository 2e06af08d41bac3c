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
/// Interleaved 1F1B (Megatron-LM's virtual pipeline): the stage holds v
/// virtual stages (s, s+p, ..., s+(v−1)p of the p·v), and a micro-batch
/// goes round the ring of stages v times. Megatron's order: forward number
/// k runs micro-batch (k / pv)·p + k mod p on virtual stage (k mod pv) / p,
/// backward number k the same micro-batch on virtual stage v−1−(k mod pv)/p;
/// (p−s−1)·2 + (v−1)·p forwards fill the pipe, then one forward and one
/// backward alternate, then the backwards drain. m must be a multiple of p.
/// Each virtual stage still runs its forwards and its backwards in
/// micro-batch order.
///
/// Sends are buffered (a send returns once the data is copied), so any
/// stage order in which each stage receives in the order its neighbour
/// sends cannot deadlock; every schedule has that property for the m it
/// accepts (activations and their gradients travel on separate
/// communicators, so with p = 2, where the next stage is also the previous
/// one, the two kinds never share a queue).
enum StageOp: Equatable, Sendable {
    /// (micro-batch, the stage's virtual stage 0..<v)
    case forward(Int, Int)
    case backward(Int, Int)
}

struct StageSchedule: Sendable {
    let ops: [StageOp]
    /// Micro-batch pieces of work alive at once, at most, over all virtual stages.
    let inFlight: Int
    /// The same per virtual stage: its micro-batches live in slots j mod live[k].
    let live: [Int]

    init(kind: PipelineSchedule, stage s: Int, stages p: Int, microBatches m: Int, virtualStages v: Int = 1) {
        var ops: [StageOp] = []
        switch kind {
        case .gpipe:
            for j in 0..<m { ops.append(.forward(j, 0)) }
            for j in 0..<m { ops.append(.backward(j, 0)) }
        case .oneForwardOneBackward:
            let warmup = min(p - s - 1, m)
            for j in 0..<warmup { ops.append(.forward(j, 0)) }
            var nextBackward = 0
            for j in warmup..<m {
                ops.append(.forward(j, 0))
                ops.append(.backward(nextBackward, 0))
                nextBackward += 1
            }
            while nextBackward < m {
                ops.append(.backward(nextBackward, 0))
                nextBackward += 1
            }
        case .interleaved:
            let total = m * v
            func forward(_ k: Int) -> StageOp { .forward((k / (p * v)) * p + k % p, (k % (p * v)) / p) }
            func backward(_ k: Int) -> StageOp { .backward((k / (p * v)) * p + k % p, v - 1 - (k % (p * v)) / p) }
            let warmup = min((p - s - 1) * 2 + (v - 1) * p, total)
            for k in 0..<warmup { ops.append(forward(k)) }
            for k in 0..<(total - warmup) {
                ops.append(forward(k + warmup))
                ops.append(backward(k))
            }
            for k in (total - warmup)..<total { ops.append(backward(k)) }
        }
        self.ops = ops
        let chunks = kind == .interleaved ? v : 1
        var alive = [Int](repeating: 0, count: chunks)
        var peak = alive
        var all = 0
        var allPeak = 0
        for op in ops {
            switch op {
            case .forward(_, let k):
                alive[k] += 1
                all += 1
            case .backward(_, let k):
                alive[k] -= 1
                all -= 1
            }
            for k in 0..<chunks { peak[k] = max(peak[k], alive[k]) }
            allPeak = max(allPeak, all)
        }
        inFlight = allPeak
        live = peak.map { max($0, 1) }
    }
}
