import ParmlTensor

/// How the top-level layers of a model are cut into pipeline stages.
///
/// Stages are contiguous runs of top-level layers (a residual block is one
/// layer), so each stage owns one contiguous slice of the parameter arena.
/// The cut minimises the largest stage cost, where a layer's cost is what
/// `LayerCost.stageCosts` says (the flops of its forward and backward for
/// one sample, or its parameter count when the model does not imply its
/// input) plus one, so that every layer counts.
/// Interleaved 1F1B cuts pp × v runs (virtual stages) the same way.
struct StagePartition: Sendable, Equatable {
    /// Top-level layer indices of each stage (each virtual stage, in pipeline order).
    let layers: [Range<Int>]

    init(layers: [Range<Int>]) { self.layers = layers }

    /// The cut the host marked: stages start at `starts` (increasing, in
    /// 1..<layerCount), so pp × v must be starts.count + 1.
    static func marked(starts: [Int], layerCount: Int, stages: Int, virtualStages v: Int = 1) throws -> StagePartition {
        guard stages * v == starts.count + 1 else {
            let asked = v == 1 ? "pp=\(stages)" : "pp × virtual_stages = \(stages) × \(v) = \(stages * v)"
            throw ParmlError.invalidArgument(
                "pipeline: the model marks \(starts.count) stage boundar\(starts.count == 1 ? "y" : "ies") "
                    + "(\(starts.count + 1) stages) but \(asked)")
        }
        let bounds = [0] + starts + [layerCount]
        guard zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw ParmlError.invalidArgument("pipeline: a marked stage would hold no layer (boundaries \(starts), \(layerCount) layers)")
        }
        return StagePartition(layers: zip(bounds, bounds.dropFirst()).map { $0..<$1 })
    }

    /// The balanced cut of layers with `costs` into `stages` × `v` runs.
    static func balanced(costs: [Int], stages pp: Int, virtualStages v: Int = 1) throws -> StagePartition {
        let n = costs.count
        guard pp >= 1 else { throw ParmlError.invalidArgument("pipeline: pp must be >= 1, got \(pp)") }
        let stages = pp * v
        guard stages <= n else {
            let asked = v == 1 ? "pp=\(pp) stages" : "pp × virtual_stages = \(pp) × \(v) = \(stages) runs of layers"
            throw ParmlError.invalidArgument(
                "pipeline: \(asked) but the model has \(n) top-level layer(s); each \(v == 1 ? "stage" : "run") needs at least one "
                    + "(a residual block counts as one layer)")
        }
        // best[k][i]: the smallest possible largest-stage cost when layers
        // 0..<i form k stages; cut[k][i] the start of the last of them.
        var prefix = [0]
        for c in costs { prefix.append(prefix.last! + c + 1) }
        let inf = Int.max
        var best = [[Int]](repeating: [Int](repeating: inf, count: n + 1), count: stages + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: n + 1), count: stages + 1)
        best[0][0] = 0
        for k in 1...stages {
            for i in k...n {
                for j in (k - 1)..<i where best[k - 1][j] != inf {
                    let v = max(best[k - 1][j], prefix[i] - prefix[j])
                    // Ties go to the later cut: earlier stages get fewer layers,
                    // which shortens the warm-up of the pipeline's first stages.
                    if v <= best[k][i] {
                        best[k][i] = v
                        cut[k][i] = j
                    }
                }
            }
        }
        var bounds: [Range<Int>] = []
        var end = n
        for k in stride(from: stages, through: 1, by: -1) {
            let start = cut[k][end]
            bounds.append(start..<end)
            end = start
        }
        return StagePartition(layers: bounds.reversed())
    }
}
