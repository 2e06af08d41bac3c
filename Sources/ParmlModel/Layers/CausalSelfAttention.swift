import ParmlTensor
import _CParmlKernels

#if canImport(Glibc)
import Glibc
#endif

// nanoGPT's CausalSelfAttention. Shapes: x (B, T, C), nh heads of size
// hs = C/nh, rows R = B·T.
//   qkv (R, 3C) = x·Wₐᵀ + bₐ           one sgemm; q, k, v are the column
//                                      blocks [0,C), [C,2C), [2C,3C); head h is
//                                      columns h·hs..<(h+1)·hs of each
//   S  (T, T)   = q·kᵀ/√hs per (b, h)  on the strided views (ld 3C), in
//                                      one C kernel per pair with the rest
//                                      (pml_attention.h)
//   P           = softmax_j(S), j ≤ i (causal: j > i is exactly 0)
//   P̃           = P ⊙ M/(1−p)          attention dropout, training only
//   y  (T, hs)  = P̃·v, written into head h's columns of y (R, C)
//   out (R, C)  = y·Wₚᵀ + bₚ
// backward, per (b, h), with dy the gradient at y:
//   dv = P̃ᵀ·dy, dP̃ = dy·vᵀ, dP = dP̃ ⊙ M/(1−p),
//   dS = P ⊙ (dP − rowsum(dP ⊙ P)), dq = dS·k/√hs, dk = dSᵀ·q/√hs.
//
// Dropout stream: Philox with the pass's seed, stream
// RandomStream.dropout(layer: layerID, step: step); the uniform of element
// (global sample s = sampleOffset + b, head h, query i, key j) is element
// ((s·nh + h)·T + i)·T + j of that stream, kept when ≥ p. A sample draws the
// same mask whichever rank or micro-batch runs it.
//
// Tensor parallelism (HeadParallelLayer) splits it by heads: a head slice
// holds nh′ of the nh heads, from `headOffset`, an inner width d = nh′·hs
// instead of C (c_attn (3d, C): the q, k and v rows of its heads; c_proj
// (C, d): their columns, without c_proj's bias, which is added after the
// partial outputs are summed), and draws the masks of global heads
// headOffset + h (keyed on the whole layer's id and head count).
public final class CausalSelfAttention: KindedLayer, RandomizedLayer, HeadParallelLayer {
    public static let descriptor = LayerKind(
        name: "causal_self_attention", className: "CausalSelfAttention",
        doc: "multi-head causal self-attention as nanoGPT's CausalSelfAttention: fused q,k,v projection c_attn, "
            + "softmax(q k^T / sqrt(head size)) with a causal mask, output projection c_proj; input (B, T, features) -> (B, T, features)",
        attributes: [
            .size("features", doc: "embedding size C (n_embd)"),
            .size("heads", doc: "number of heads (n_head); must divide features"),
            .flag("bias", default: true, doc: "learned biases on both projections"),
            .float("dropout", default: 0, doc: "dropout probability on the attention weights, training only", rule: "in [0, 1)") {
                $0 >= 0 && $0 < 1
            },
        ]
    ) { a in
        try CausalSelfAttention(features: a.int("features"), heads: a.int("heads"), bias: a.bool("bias"), dropout: a.float("dropout"))
    }

    public let features: Int
    /// The heads this layer computes (all of them, but in a head slice).
    public let heads: Int
    /// Biases on the projections (a head slice has c_attn's only: see `projectionBias`).
    public let hasBias: Bool
    public let dropout: Float
    public let headSize: Int
    /// c_proj has a bias (`hasBias`, but in a head slice).
    public let projectionBias: Bool
    /// A head slice's first head in the whole layer, and the whole layer's head count.
    public let headOffset: Int
    public let layerHeads: Int
    /// Width of the heads joined: C, or a head slice's d = heads·headSize.
    public var inner: Int { heads * headSize }
    public var layerID: Int = 0
    public var pinnedLayerID: Int?

    // Read by incremental decoding (CausalSelfAttention+Decoding.swift).
    private(set) var attnWeight: Tensor?
    private(set) var attnBias: Tensor?
    private(set) var projWeight: Tensor?
    private(set) var projBias: Tensor?
    private var attnWeightGrad: Tensor?
    private var attnBiasGrad: Tensor?
    private var projWeightGrad: Tensor?
    private var projBiasGrad: Tensor?

    private(set) var input: Tensor?
    private var wasDropping = false
    /// The forward pass's own thread count (`PassContext.libraryThreads`),
    /// which sizes the pair kernels' scratch and their split in both passes.
    private var passThreads = 1
    let qkv = Buffer()  // (B, T, 3C)
    let probs = Buffer()  // P (B, nh, T, T)
    private let dropped = Buffer()  // P̃ (B, nh, T, T), when dropping
    private let mask = Buffer()  // M/(1−p) (B, nh, T, T), when dropping
    let heads_ = Buffer()  // y (B, T, C), heads joined
    let output = Buffer()
    let gradHeads = Buffer()  // dy (B, T, C)
    private let gradQKV = Buffer()  // (B, T, 3C)
    private let pairScratch = Buffer()  // (parts, pml_attention_scratch(T, hs)): one per thread

    /// (sample, head) pairs per part at least: a pair's products and softmax
    /// take a few µs at T = 64, as long as a hand-over to another thread.
    static let pairGrain = 2
    let gradInput = Buffer()
    /// Private training's per-example norms (CausalSelfAttention+PerExampleNorms.swift).
    let normScratch = Buffer()
    /// bf16 precision's copies and plans of c_attn and c_proj (BF16Projection.swift).
    private let bf16Attn = BF16Projection(), bf16Proj = BF16Projection()
    // Generation's key/value cache: k and v rows of the positions decoded
    // since beginSequence, K and V (capacity, d) (CausalSelfAttention+Decoding.swift).
    let cachedKeys = Buffer()
    let cachedValues = Buffer()
    var cachedPositions = 0

    public convenience init(features: Int, heads: Int, bias: Bool = true, dropout: Float = 0) throws {
        guard features > 0, heads > 0 else {
            throw ParmlError.invalidArgument("causal_self_attention: features and heads must be positive, got features=\(features) heads=\(heads)")
        }
        guard features % heads == 0 else {
            throw ParmlError.invalidArgument(
                "causal_self_attention: heads (\(heads)) must divide features (\(features)); \(features) % \(heads) = \(features % heads)")
        }
        guard features <= 26_754, 3 * features * features <= Int(Int32.max) else {
            throw ParmlError.invalidArgument("causal_self_attention: \(3 * features)x\(features) weights are too large")
        }
        guard dropout >= 0, dropout < 1 else {
            throw ParmlError.invalidArgument("causal_self_attention: dropout must be in [0, 1), got \(dropout)")
        }
        self.init(
            features: features, heads: heads, headSize: features / heads, headOffset: 0, layerHeads: heads, bias: bias,
            projectionBias: bias, dropout: dropout)
    }

    /// A head slice: heads headOffset..<headOffset + heads of a layer with
    /// `layerHeads` heads of `headSize` over `features`. Engine-made (tensor
    /// parallelism), never a file's layer.
    init(features: Int, heads: Int, headSize: Int, headOffset: Int, layerHeads: Int, bias: Bool, projectionBias: Bool, dropout: Float) {
        self.features = features
        self.heads = heads
        self.headSize = headSize
        self.headOffset = headOffset
        self.layerHeads = layerHeads
        self.hasBias = bias
        self.projectionBias = projectionBias
        self.dropout = dropout
    }

    public func replicate() throws -> Layer {
        let l = CausalSelfAttention(
            features: features, heads: heads, headSize: headSize, headOffset: headOffset, layerHeads: layerHeads, bias: hasBias,
            projectionBias: projectionBias, dropout: dropout)
        l.pinnedLayerID = pinnedLayerID
        return l
    }

    private var isHeadSlice: Bool { heads != layerHeads }

    public var outputBiasTensor: Int? { projectionBias ? (hasBias ? 3 : 2) : nil }

    /// Heads t·H/tp..<(t+1)·H/tp: c_attn's rows for their q, k and v (three
    /// runs of d = C/tp rows, at t·d, C + t·d and 2C + t·d), its bias
    /// likewise, and c_proj's columns t·d..<(t+1)·d.
    public func headSlice(rank t: Int, ranks tp: Int) throws -> HeadSlice {
        guard !isHeadSlice, tp > 0, heads % tp == 0, t >= 0, t < tp else {
            throw ParmlError.invalidArgument("causal_self_attention: cannot split \(heads) heads over \(tp) tensor-parallel ranks")
        }
        let nh = heads / tp, d = nh * headSize, c = features
        let slice = CausalSelfAttention(
            features: c, heads: nh, headSize: headSize, headOffset: t * nh, layerHeads: heads, bias: hasBias, projectionBias: false,
            dropout: dropout)
        slice.pinnedLayerID = pinnedLayerID ?? layerID
        var sources: [[SliceRun]] = [(0..<3).map { SliceRun(tensor: 0, offset: ($0 * c + t * d) * c, stride: c, rows: d, cols: c) }]
        if hasBias { sources.append((0..<3).map { SliceRun(tensor: 1, offset: $0 * c + t * d, stride: d, rows: 1, cols: d) }) }
        sources.append([SliceRun(tensor: hasBias ? 2 : 1, offset: t * d, stride: c, rows: c, cols: d)])
        return HeadSlice(layer: slice, sources: sources)
    }

    public var attributes: Attributes {
        ["features": .int(Int64(features)), "heads": .int(Int64(heads)), "bias": .bool(hasBias), "dropout": .float(dropout)]
    }

    public var planLabel: String {
        isHeadSlice
            ? "causal_self_attention(\(features), heads \(headOffset)..<\(headOffset + heads) of \(layerHeads))"
            : "causal_self_attention(\(features), \(heads) heads)"
    }

    public var parameterSpecs: [ParameterSpec] {
        let bound = 1 / Float(features).squareRoot()  // fan_in is C for both projections
        let c = features, d = inner
        var specs = [ParameterSpec(name: "c_attn.weight", shape: Shape(3 * d, c), initializer: .uniform(bound: bound), decays: true)]
        if hasBias { specs.append(ParameterSpec(name: "c_attn.bias", shape: Shape(3 * d), initializer: .uniform(bound: bound), decays: false)) }
        specs.append(ParameterSpec(name: "c_proj.weight", shape: Shape(c, d), initializer: .uniform(bound: bound), decays: true))
        if projectionBias {
            specs.append(ParameterSpec(name: "c_proj.bias", shape: Shape(c), initializer: .uniform(bound: bound), decays: false))
        }
        return specs
    }

    public func bind(values: [Tensor], gradients: [Tensor]) {
        var i = 0
        func next() -> (Tensor, Tensor) {
            defer { i += 1 }
            return (values[i], gradients[i])
        }
        (attnWeight, attnWeightGrad) = next()
        if hasBias { (attnBias, attnBiasGrad) = next() }
        (projWeight, projWeightGrad) = next()
        if projectionBias { (projBias, projBiasGrad) = next() }
    }

    /// Opset 17 with a symbolic batch N and T fixed by the export's input
    /// shape. The lowering has no perm attribute for Transpose, so the
    /// head-major layouts come from weight rearrangements and from swapping
    /// two trailing axis groups with two plain Transposes (which reverse all
    /// axes) between Reshapes:
    ///   q, v (N, nh, T, hs) = (N, 1, T, C)·W′ (3nh, C, hs) + b, gathered
    ///   kᵀ (N, nh, hs, T)   = Wₖ (nh, hs, C)·xᵀ (N, 1, C, T) + bₖ
    ///   P = Softmax(q·kᵀ·(1/√hs) + mask), mask −∞ above the diagonal
    ///   out = ReduceSum_h(P·v · Wₚᵀ viewed (nh, hs, C)) + bₚ
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        guard !isHeadSlice else { throw ParmlError.unsupported("causal_self_attention: a tensor-parallel head slice is not exported") }
        _ = try outputShape(for: shape)
        let t = shape[1], c = features, nh = heads, hs = headSize
        func ints(_ v: [Int]) throws -> String { try g.constant(int64: v.map { Int64($0) }, dims: [v.count]) }
        func index(_ i: Int) throws -> String { try g.constant(int64: [Int64(i)], dims: []) }
        func reshape(_ v: String, _ dims: [Int]) throws -> String { try g.node("Reshape", [v, ints(dims)]) }
        func gather(_ v: String, _ i: Int, axis: Int) throws -> String { try g.node("Gather", [v, index(i)], [.int("axis", Int64(axis))]) }
        // (P, X, Y) → (P·... as (P, X·Y)) → (X·Y, P) → (X, Y, P) → (P, Y, X); P may be −1 (the batch).
        func swapTrailing(_ v: String, p: Int, x: Int, y: Int) throws -> String {
            let flipped = try g.node("Transpose", [reshape(v, [p, x * y])])
            return try g.node("Transpose", [reshape(flipped, [x, y, p])])
        }
        let w = try g.parameter(0)  // (3C, C) = (3nh, hs, C)
        let b = hasBias ? try g.parameter(1) : nil
        // q and v, head-major.
        let wqv = try swapTrailing(w, p: 3 * nh, x: hs, y: c)  // (3nh, C, hs)
        var all = try g.node("MatMul", [reshape(x, [-1, 1, t, c]), wqv])  // (N, 3nh, T, hs)
        if let b { all = try g.node("Add", [all, reshape(b, [3 * nh, 1, hs])]) }
        let split = try reshape(all, [-1, 3, nh, t, hs])
        let q = try gather(split, 0, axis: 1), v = try gather(split, 2, axis: 1)
        // kᵀ from the rows of W that make k and the transposed input.
        let xt = try reshape(swapTrailing(x, p: -1, x: t, y: c), [-1, 1, c, t])
        var kt = try g.node("MatMul", [gather(reshape(w, [3, nh, hs, c]), 1, axis: 0), xt])  // (N, nh, hs, T)
        if let b { kt = try g.node("Add", [kt, gather(reshape(b, [3, nh, hs, 1]), 1, axis: 0)]) }
        // Causal softmax and the weighted values.
        var mask = [Float](repeating: 0, count: t * t)
        for i in 0..<t { for j in (i + 1)..<t { mask[i * t + j] = -.infinity } }
        let scores = try g.node("Mul", [g.node("MatMul", [q, kt]), g.scalar(1 / Float(hs).squareRoot())])
        let p = try g.node("Softmax", [g.node("Add", [scores, g.constant(mask, dims: [t, t])])], [.int("axis", -1)])
        let y = try g.node("MatMul", [p, v])  // (N, nh, T, hs)
        // Heads joined by the projection: Σ_h y_h · (Wₚᵀ rows of head h).
        let wp = try reshape(g.parameter(hasBias ? 2 : 1, transposed: true), [nh, hs, c])
        let out = try g.node("ReduceSum", [g.node("MatMul", [y, wp]), ints([1])], [.int("keepdims", 0)])
        return hasBias ? try g.node("Add", [out, g.parameter(3)]) : out
    }

    /// Rank 3 only: the first dimension is the batch that data parallelism
    /// splits, so a rank-2 input cannot be read as one sequence (T, C)
    /// without attending across samples.
    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank == 3, input[2] == features else {
            throw ParmlError.shape("causal_self_attention(\(features)) expects input (B, T, \(features)), got \(input)")
        }
        return input
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let attnWeight, let projWeight else { throw ParmlError.state("causal_self_attention is not bound to parameters") }
        _ = try outputShape(for: x.shape)
        // c: the input's and output's width; d: the heads' (C, or a head slice's).
        let b = x.shape[0], t = x.shape[1], c = features, d = inner, nh = heads, hs = headSize
        let rows = b * t, c3 = 3 * d, tt = t * t
        let q = try qkv.shaped(Shape(b, t, c3))
        if let attnBias { Kernels.broadcastRows(attnBias.data, into: q.data, rows: rows, cols: c3) }
        if ctx.precision == .bf16 {  // bf16 projections; the per-head products stay float32 (docs/precision.md)
            try bf16Attn.forward(x.data, weight: attnWeight.data, rows: rows, inF: c, outF: c3, beta: attnBias == nil ? 0 : 1, into: q.data, ctx)
        } else {
            BLAS.gemm(
                transA: false, transB: true, m: rows, n: c3, k: c, x.data, lda: c, attnWeight.data, ldb: c,
                beta: attnBias == nil ? 0 : 1, q.data, ldc: c3)
        }

        wasDropping = ctx.training && dropout > 0
        passThreads = ctx.libraryThreads
        let p = try probs.shaped(Shape(b * nh, t, t))  // (B, nh, T, T) as (B·nh, T, T)
        var pv = p
        if wasDropping {
            let m = try mask.shaped(p.shape)
            let rng = Philox(seed: ctx.seed)
            let stream = RandomStream.dropout(layer: layerID, step: ctx.step)
            if isHeadSlice {
                // Per sample, the global heads headOffset..<headOffset + nh of the whole layer's layerHeads.
                for bi in 0..<b {
                    let first = (UInt64(ctx.sampleOffset + bi) &* UInt64(layerHeads) &+ UInt64(headOffset)) &* UInt64(tt)
                    rng.fillUniform(m.data + bi * nh * tt, count: nh * tt, stream: stream, first: first)
                }
            } else {
                rng.fillUniform(m.data, count: m.count, stream: stream, first: UInt64(ctx.sampleOffset) &* UInt64(nh * tt))
            }
            let keep = 1 / (1 - dropout)
            for i in 0..<m.count { m.data[i] = m.data[i] >= dropout ? keep : 0 }
            pv = try dropped.shaped(p.shape)
        }
        let y = try heads_.shaped(Shape(b, t, d))
        let scale = 1 / Float(hs).squareRoot()
        let scratch = try pairScratch(t: t, pairs: b * nh)
        // (sample, head) pairs are independent: split over the rank's threads.
        WorkerPool.forRanges(
            count: b * nh, grain: Self.pairGrain, alignment: 1, parts: scratch.parts,
            ForwardPairs(
                t: t, nh: nh, hs: hs, d: d, scale: scale, q: q.data, p: p.data, pv: pv.data,
                mask: wasDropping ? mask.tensor.data : nil, y: y.data, scratch: scratch))

        let out = try output.shaped(x.shape)
        if let projBias { Kernels.broadcastRows(projBias.data, into: out.data, rows: rows, cols: c) }
        if ctx.precision == .bf16 {
            try bf16Proj.forward(y.data, weight: projWeight.data, rows: rows, inF: d, outF: c, beta: projBias == nil ? 0 : 1, into: out.data, ctx)
        } else {
            BLAS.gemm(
                transA: false, transB: true, m: rows, n: c, k: d, y.data, lda: d, projWeight.data, ldb: d,
                beta: projBias == nil ? 0 : 1, out.data, ldc: c)
        }
        input = x
        return out
    }

    /// Row i of the rows×columns scores, the query at position offset + i:
    /// softmax over keys j ≤ offset + i, exactly 0 beyond (offset 0 and a
    /// square s for a whole sequence; decoding queries later positions).
    /// Vectorised in C (pml_attention.h): e^x by a polynomial, the row sum
    /// in 16 fixed lanes.
    @inline(__always)
    static func causalSoftmax(_ s: UnsafeMutablePointer<Float>, rows: Int, columns: Int, offset: Int) {
        pml_causal_softmax(s, rows, columns, offset)
    }

    public func backward(_ dout: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard let attnWeight, let projWeight, let attnWeightGrad, let projWeightGrad, let x = input else {
            throw ParmlError.state("causal_self_attention backward without forward")
        }
        let b = x.shape[0], t = x.shape[1], c = features, d = inner
        let rows = b * t, c3 = 3 * d
        let beta = ctx.gradientBeta(accumulate: accumulate)
        let y = heads_.tensor

        // Output projection: dWₚ, dbₚ, dy = dout·Wₚ. gemm with beta 0 and
        // sumRows with beta 0 overwrite (a NaN from an earlier step is gone).
        let dy = try gradHeads.shaped(y.shape)
        if ctx.precision == .bf16 {
            try bf16Proj.backward(dout.data, rows: rows, inF: d, outF: c, beta: beta, weightGradient: projWeightGrad.data, inputGradient: dy.data)
        } else {
            BLAS.gemm(
                transA: true, transB: false, m: c, n: d, k: rows, dout.data, lda: c, y.data, ldb: d, beta: beta, projWeightGrad.data, ldc: d)
            headsGradient(dout, weight: projWeight, into: dy)
        }
        if let projBiasGrad { Kernels.sumRows(dout.data, rows: rows, cols: c, into: projBiasGrad.data, beta: beta) }

        let dq = try attentionBackward(dy)

        // Fused projection: dWₐ, dbₐ, dx = dqkv·Wₐ.
        if let attnBiasGrad { Kernels.sumRows(dq.data, rows: rows, cols: c3, into: attnBiasGrad.data, beta: beta) }
        if ctx.precision == .bf16 {
            let dx = needInputGradient ? try gradInput.shaped(x.shape) : nil
            try bf16Attn.backward(dq.data, rows: rows, inF: c, outF: c3, beta: beta, weightGradient: attnWeightGrad.data, inputGradient: dx?.data)
            return dx
        }
        BLAS.gemm(
            transA: true, transB: false, m: c3, n: c, k: rows, dq.data, lda: c3, x.data, ldb: c, beta: beta, attnWeightGrad.data, ldc: c)
        guard needInputGradient else { return nil }
        return try inputGradient(dq, weight: attnWeight, input: x)
    }

    /// dy = dout·Wₚ, the gradient at the joined heads (float32).
    func headsGradient(_ dout: Tensor, weight projWeight: Tensor, into dy: Tensor) {
        let rows = dout.count / features, d = inner
        BLAS.gemm(
            transA: false, transB: false, m: rows, n: d, k: features, dout.data, lda: features, projWeight.data, ldb: d, beta: 0,
            dy.data, ldc: d)
    }

    /// Attention's backward from dy (the gradient at the joined heads) to
    /// dqkv (B, T, 3d), per (b, h); the pairs split over the rank's
    /// threads, each part with its own (T, T) scratch. No parameter touched.
    func attentionBackward(_ dy: Tensor) throws -> Tensor {
        let q = qkv.tensor, p = probs.tensor, pv = wasDropping ? dropped.tensor : p
        let b = q.shape[0], t = q.shape[1], nh = heads, hs = headSize
        let dq = try gradQKV.shaped(q.shape)
        let scratch = try pairScratch(t: t, pairs: b * nh)
        WorkerPool.forRanges(
            count: b * nh, grain: Self.pairGrain, alignment: 1, parts: scratch.parts,
            BackwardPairs(
                t: t, nh: nh, hs: hs, d: inner, scale: 1 / Float(hs).squareRoot(), q: q.data, p: p.data, pv: pv.data,
                mask: wasDropping ? mask.tensor.data : nil, dy: dy.data, dq: dq.data, scratch: scratch))
        return dq
    }

    /// The pair kernels' scratch, one slice per part of `pairs` (its size
    /// from pml_attention_scratch; the buffer keeps its room across steps),
    /// and the parts the kernels are split into: one count for both, from
    /// the pass's own threads. The pool's size is one setting per process:
    /// read twice, once for the scratch and once for the split, another
    /// trainer could change it in between (more parts than slices), and it
    /// grew this layer's buffers with another trainer's threads.
    private func pairScratch(t: Int, pairs: Int) throws -> PairScratch {
        let per = pml_attention_scratch(t, headSize)
        let parts = WorkerPool.partLimit(count: pairs, grain: Self.pairGrain, threads: passThreads)
        return PairScratch(base: try pairScratch.shaped(Shape(parts, per)).data, stride: per, parts: parts)
    }

    /// dx = dqkv·Wₐ into the layer's input-gradient buffer (float32).
    func inputGradient(_ dq: Tensor, weight attnWeight: Tensor, input x: Tensor) throws -> Tensor {
        let dx = try gradInput.shaped(x.shape)
        BLAS.gemm(
            transA: false, transB: false, m: dq.count / (3 * inner), n: features, k: 3 * inner, dq.data, lda: 3 * inner,
            attnWeight.data, ldb: features, beta: 0, dx.data, ldc: features)
        return dx
    }
}

/// Part p's slice of the pair kernels' scratch.
private struct PairScratch {
    let base: UnsafeMutablePointer<Float>
    let stride: Int
    let parts: Int
    func part(_ p: Int) -> UnsafeMutablePointer<Float> { base + p * stride }
}

/// Attention forward for a range of (sample, head) pairs: scores, causal
/// softmax, dropout, weighted values (pml_attention_forward). Pairs touch
/// disjoint memory.
private struct ForwardPairs: RangeTask {
    let t, nh, hs, d: Int
    let scale: Float
    let q, p, pv: UnsafeMutablePointer<Float>
    let mask: UnsafeMutablePointer<Float>?
    let y: UnsafeMutablePointer<Float>
    let scratch: PairScratch

    func run(_ pairs: Range<Int>, part: Int) {
        let c3 = 3 * d, tt = t * t
        let work = scratch.part(part)
        for pair in pairs {
            let bi = pair / nh, h = pair % nh
            let head = q + bi * t * c3 + h * hs
            let off = pair * tt
            pml_attention_forward(
                t, hs, scale, head, head + d, head + 2 * d, c3, p + off, pv + off, mask.map { $0 + off }, y + bi * t * d + h * hs, d,
                work)
        }
    }
}

/// Attention backward for a range of (sample, head) pairs into dqkv
/// (pml_attention_backward); part p uses its slice of `scratch`.
private struct BackwardPairs: RangeTask {
    let t, nh, hs, d: Int
    let scale: Float
    let q, p, pv: UnsafeMutablePointer<Float>
    let mask: UnsafeMutablePointer<Float>?
    let dy, dq: UnsafeMutablePointer<Float>
    let scratch: PairScratch

    func run(_ pairs: Range<Int>, part: Int) {
        let c3 = 3 * d, tt = t * t
        let work = scratch.part(part)
        for pair in pairs {
            let bi = pair / nh, h = pair % nh
            let head = q + bi * t * c3 + h * hs, dhead = dq + bi * t * c3 + h * hs
            let off = pair * tt
            pml_attention_backward(
                t, hs, scale, head, head + d, head + 2 * d, c3, p + off, pv + off, mask.map { UnsafePointer($0 + off) },
                dy + bi * t * d + h * hs, d, dhead, dhead + d, dhead + 2 * d, c3, work)
        }
    }
}

extension CausalSelfAttention: WorkDescribingLayer {
    /// The qkv projection, per head Q·Kᵀ and P·V, the output projection;
    /// the softmax (and dropout) over the (T × T) scores is element-wise.
    public func forwardWork(input: Shape) throws -> LayerWork {
        let t = input.rank >= 2 ? input[input.rank - 2] : 1
        let rows = input.count / max(features, 1), batch = rows / max(t, 1)
        let scores = Double(batch * heads) * Double(t * t)
        return LayerWork(
            products: [
                MatrixProduct(m: rows, n: 3 * inner, k: features, timesWeights: true),
                MatrixProduct(m: t, n: t, k: headSize, count: batch * heads),
                MatrixProduct(m: t, n: headSize, k: t, count: batch * heads),
                MatrixProduct(m: rows, n: features, k: inner, timesWeights: true),
            ],
            elementwiseFloats: scores * (dropout > 0 ? 4 : 2) + Double(rows * 3 * inner))
    }
}
