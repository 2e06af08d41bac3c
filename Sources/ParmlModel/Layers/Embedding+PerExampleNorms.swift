import ParmlTensor

/// Private training. Example i's gradient of the embedding table has, for
/// each token id v among its positions, the row Σ_{t: id_t = v} δ_t, so its
/// squared norm is Σ_v ‖Σ_{t: id_t = v} δ_t‖²: positions sorted by id, each
/// id's output gradients summed once (T·dim work, the T × T Gram form
/// Σ_{t,s} [id_t = id_s] δ_t·δ_s without its T² dot products). Ids outside
/// this layer's vocabulary slice have no row here and add nothing. A tied
/// classifier's cross term is added here too.
extension Embedding: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        guard let x = input else { throw ParmlError.state("embedding backward without forward") }
        let examples = dy.shape[0]
        let positions = examples > 0 ? x.count / examples : 0
        let sum = try normScratch.shaped(Shape(dim)).data
        var order = [Int](repeating: 0, count: positions)
        for i in 0..<examples {
            let ids = x.data + i * positions, rows = dy.data + i * positions * dim
            var n = 0
            for t in 0..<positions {
                let id = Int(ids[t]) - firstID
                if id >= 0 && id < count {
                    order[n] = t
                    n += 1
                }
            }
            order[..<n].sort { (ids[$0], $0) < (ids[$1], $1) }  // by id, then position: a fixed order of additions
            var k = 0
            while k < n {
                let id = ids[order[k]]
                sum.update(from: rows + order[k] * dim, count: dim)
                k += 1
                while k < n && ids[order[k]] == id {
                    Kernels.addInPlace(sum, rows + order[k] * dim, count: dim)
                    k += 1
                }
                squaredNorms[i] += Kernels.sumOfSquares(sum, count: dim)
            }
        }
        try addTiedCrossTerms(dy, ids: x, into: squaredNorms)  // a tied classifier's (TiedClassifier+PerExampleNorms.swift)
        guard needInputGradient else { return nil }
        // Ids are not differentiable: nothing flows back to them (as backward).
        let dx = try gradInput.shaped(x.shape)
        dx.fill(0)
        return dx
    }
}

/// Private training. Example i's gradient of the table is its output
/// gradient summed over its sequences (one sequence for an (N, T, C)
/// input): its squared norm, no gradient written.
extension PositionEmbedding: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        let examples = dy.shape[0]
        guard examples > 0 else { return needInputGradient ? dy : nil }
        let span = dy.shape[dy.shape.rank - 2] * dim, perExample = dy.count / examples
        var sum = [Float](repeating: 0, count: perExample > span ? span : 0)
        for i in 0..<examples {
            let rows = dy.data + i * perExample
            if perExample == span {
                squaredNorms[i] += Kernels.sumOfSquares(rows, count: span)
                continue
            }
            sum.withUnsafeMutableBufferPointer { s in
                s.baseAddress!.update(from: rows, count: span)
                for o in stride(from: span, to: perExample, by: span) { Kernels.addInPlace(s.baseAddress!, rows + o, count: span) }
                squaredNorms[i] += Kernels.sumOfSquares(s.baseAddress!, count: span)
            }
        }
        return needInputGradient ? dy : nil
    }
}
