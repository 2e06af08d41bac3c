import ParmlModel
import ParmlParallel
import ParmlTensor

/// Private training under tp (docs/privacy.md). A sliced layer's per-example
/// squared norm on one tp rank is its slice's part (the tp ranks' parts add
/// up to the layer's); a replicated layer's is the whole one, the same on
/// every rank. The norm pass keeps the two apart, `sliced` and `whole`, so
/// that the sliced sums can be all-reduced over the tp group and the whole
/// ones added once.
struct TensorParallelNormPass {
    /// Layers of one model copy whose parameters every tp rank holds whole.
    let replicated: Set<ObjectIdentifier>

    /// Sorts `model`'s (a copy of the rank's rewritten model) layers with
    /// parameters by where `rewrite` says their parameters come from.
    init(model: Model, rewrite: TensorParallelRewrite) throws {
        var ids = Set<ObjectIdentifier>()
        var k = 0
        for l in model.allLayers {
            let n = l.parameterSpecs.count
            guard n > 0 else { continue }
            guard k + n <= rewrite.sources.count else { throw ParmlError.internal("a tp model has more parameters than its rewrite") }
            let sources = rewrite.sources[k..<(k + n)]
            if sources.allSatisfy(\.replicated) {
                ids.insert(ObjectIdentifier(l))
            } else if sources.contains(where: \.replicated) {
                throw ParmlError.internal("\(l.kind) holds both sliced and replicated parameters under tp")
            }
            k += n
        }
        replicated = ids
    }

    /// Pass 1 over `layers` (last first), as PerExampleNorms.backward, each
    /// parameter layer's squared norms into `whole` (replicated) or
    /// `sliced`. Residual blocks are opened so that their bodies' layers
    /// sort one by one; `scratch` holds their input gradients. Without
    /// `needFirstInputGradient`, no layer up to `firstTraining` computes one.
    func backward(
        _ layers: ArraySlice<Layer>, from dy: Tensor, _ ctx: PassContext, sliced: UnsafeMutablePointer<Float>,
        whole: UnsafeMutablePointer<Float>, needFirstInputGradient: Bool, firstTraining: Int, scratch: PrivateStepScratch
    ) throws -> Tensor? {
        var g = dy
        for l in layers.indices.reversed() {
            let need = needFirstInputGradient || l > max(firstTraining, layers.startIndex)
            let layer = layers[l]
            let next: Tensor?
            if let s = layer as? Sequential {
                next = try backward(
                    s.layers[...], from: g, ctx, sliced: sliced, whole: whole, needFirstInputGradient: need,
                    firstTraining: s.firstTrainingLayer, scratch: scratch)
            } else if let r = layer as? Residual {
                // y = x + body(x): dx = dy + the body's input gradient, read only where dx is.
                let df = try backward(
                    r.body.layers[...], from: g, ctx, sliced: sliced, whole: whole, needFirstInputGradient: need,
                    firstTraining: r.body.firstTrainingLayer, scratch: scratch)
                guard need else { return nil }
                guard let df else { throw ParmlError.internal("residual body returned no input gradient") }
                let dx = try scratch.residualGradient(for: r, shape: g.shape)
                Kernels.add(g.data, df.data, dx.data, count: g.count)
                next = dx
            } else if layer is BlockLayer {
                throw ParmlError.unsupported("private training with tp > 1: a \(layer.kind) block; only residual blocks are opened")
            } else if let p = layer as? PerExampleNormLayer {
                let into = replicated.contains(ObjectIdentifier(layer)) ? whole : sliced
                next = try p.addPerExampleSquaredNorms(g, ctx, into: into, needInputGradient: need)
            } else if layer.parameterSpecs.contains(where: \.trained) {
                throw ParmlError.unsupported("private training with tp > 1: \(layer.planLabel) has no per-example norm")
            } else {
                next = try layer.backward(g, ctx, needInputGradient: need, accumulate: true)
            }
            guard let next else { return nil }
            g = next
        }
        return g
    }
}

/// g's bias (added once after the all-reduce, replicated): example i's
/// squared norm is ‖Σ_p δᵢₚ‖² over its positions p (rows of a sequence, or
/// each channel's plane under a convolution). dy passes through.
extension TensorParallelReduce: PerExampleNormLayer {
    func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        let examples = dy.shape[0]
        if hasBias && examples > 0 {
            let perExample = dy.count / examples, positions = perExample / features
            var sums = [Float](repeating: 0, count: features)
            sums.withUnsafeMutableBufferPointer { b in
                let s = b.baseAddress!
                for i in 0..<examples {
                    let di = dy.data + i * perExample
                    if planes {  // NCHW: channel c's plane is `positions` floats
                        s.update(repeating: 0, count: features)
                        Kernels.addPlaneSums(di, into: s, planes: features, size: positions)
                    } else {
                        Kernels.sumRows(di, rows: positions, cols: features, into: s, beta: 0)
                    }
                    squaredNorms[i] += Kernels.sumOfSquares(s, count: features)
                }
            }
        }
        return needInputGradient ? dy : nil
    }
}

extension PrivateStepScratch {
    /// A residual block's input gradient in the tp norm pass, one buffer per block.
    func residualGradient(for block: Residual, shape: Shape) throws -> Tensor {
        let id = ObjectIdentifier(block)
        if let t = residualGradients[id] {
            try t.resize(shape)
            return t
        }
        let t = try Tensor(shape: shape)
        residualGradients[id] = t
        return t
    }

    /// The norm pass of `model` (a slot's copy), sorted once per copy.
    func tensorParallelPass(for model: Model, rewrite: TensorParallelRewrite) throws -> TensorParallelNormPass {
        let id = ObjectIdentifier(model)
        if let p = tensorParallelPasses[id] { return p }
        let p = try TensorParallelNormPass(model: model, rewrite: rewrite)
        tensorParallelPasses[id] = p
        return p
    }
}
