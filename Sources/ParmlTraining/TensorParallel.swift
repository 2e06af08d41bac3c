import ParmlModel
import ParmlParallel
import ParmlTensor

// Tensor parallelism (Megatron-LM's MLP scheme). A matrix layer A (a
// MatrixLayer such as linear) followed by element-wise layers and a matrix
// layer B (B.in == A.out) becomes, on tp rank t:
//
//   f → A_t (rows t·o..<(t+1)·o of A: column-parallel) → element-wise on the
//   slice → B_t (columns t·o..<(t+1)·o of B, no bias: row-parallel) → g + bias
//
// with o = A.out / tp. f is the identity forward and an all-reduce of the
// input gradient backward; g an all-reduce of the partial outputs forward
// and the identity backward. The activations between A and B stay local.
// A layer of independent heads (a HeadParallelLayer such as attention) is
// split by heads, Megatron's attention scheme, on its own:
//
//   f → its heads t·H/tp..<(t+1)·H/tp (q, k, v rows: column-parallel; the
//   output projection's columns, no bias: row-parallel) → g + output bias
//
// Convolutions pair the same way over channels (ParmlModel's
// ChannelMatrixLayer, NCHW): A (a conv2d) keeps output channels
// t·o..<(t+1)·o, B (a conv2d with B.in == A.out) those input channels, and
// the layers between them may be any that act per channel (pooling as
// well as element-wise layers: ChannelwiseLayer); g adds B's bias per
// channel. Grouped convolutions are not split.
//
// Every other layer (layer_norm, a matrix layer without a partner) is replicated:
// each tp rank runs it whole on the whole activations. The classifier (the
// model's last layer, a matrix layer without a partner) is replicated too, unless
// the strategy asks for it to be split: then it is column-parallel (f, then
// its rows t·c..<(t+1)·c) and the loss is ShardedCrossEntropy on the
// sharded logits. That saves (1 − 1/tp) of its GEMMs and weights but adds
// an all-reduce of its input gradient (N × in floats) backward: worth it
// for many classes, not for ten. The same option splits the vocabulary
// (Megatron's VocabParallelEmbedding): a token embedding holds rows
// t·V/tp..<(t+1)·V/tp, gives zeros for other ids, and g sums the ranks'
// outputs (exact: one rank's row plus zeros); its gradient stays a
// scatter-add into the rank's own rows. A classifier tied to it is split
// by the same rows, so the tie sums slices that match.

/// A layer that talks to its tensor-parallel peers; the trainer gives each
/// rank's copies that rank's communicator.
protocol TensorParallelLayer: AnyObject {
    var communicator: Communicator? { get set }
    /// Floats this layer has all-reduced (for the tp traffic benchmark).
    var floatsReduced: Int { get }
}

/// f: forward the identity, backward Σ over tp ranks of dL/dx (each rank
/// holds the part that flows through its column slice).
final class TensorParallelEnter: Layer, TensorParallelLayer {
    var communicator: Communicator?
    private(set) var floatsReduced = 0
    var kind: String { "tp_enter" }

    func replicate() throws -> Layer { TensorParallelEnter() }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }

    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard let communicator else { throw ParmlError.internal("tensor-parallel layer without a communicator") }
        // dy is the column slice's input-gradient buffer, read by nobody else.
        try communicator.allReduce(dy.data, count: dy.count, op: .sum)
        floatsReduced += dy.count
        return dy
    }
}

extension TensorParallelEnter: WorkDescribingLayer {
    /// The identity forward moves no floats, and the backward's all-reduce
    /// is the cost model's communication: the default, a read of the input
    /// and a write of the output, charged each of them twice a step.
    func forwardWork(input: Shape) throws -> LayerWork { LayerWork() }
}

/// g: forward Σ over tp ranks of the row slices' partial outputs, plus the
/// bias (added once, after the sum); backward the identity, and the bias gradient.
final class TensorParallelReduce: Layer, TensorParallelLayer {
    var communicator: Communicator?
    private(set) var floatsReduced = 0
    let features: Int
    let hasBias: Bool
    /// The features are NCHW channels (a convolution's output): the bias
    /// goes on each channel's plane rather than on each row.
    let planes: Bool
    var kind: String { "tp_reduce" }
    private var bias: Tensor?
    private var biasGrad: Tensor?
    private let output = Buffer()

    init(features: Int, bias: Bool, planes: Bool = false) {
        self.features = features
        self.hasBias = bias
        self.planes = planes
    }

    func replicate() throws -> Layer { TensorParallelReduce(features: features, bias: hasBias, planes: planes) }

    /// Samples and the size of each channel's plane of an (N, features, …) tensor.
    private func planeSizes(_ t: Tensor) -> (samples: Int, size: Int) {
        let n = t.shape[0]
        return (n, n == 0 ? 0 : t.count / (n * features))
    }

    var parameterSpecs: [ParameterSpec] {
        // The values are copied from the serial model; the initializer is unused.
        hasBias ? [ParameterSpec(name: "bias", shape: Shape(features), initializer: .constant(0), decays: false)] : []
    }

    func bind(values: [Tensor], gradients: [Tensor]) {
        if hasBias {
            bias = values[0]
            biasGrad = gradients[0]
        }
    }

    func outputShape(for input: Shape) throws -> Shape { input }

    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let communicator else { throw ParmlError.internal("tensor-parallel layer without a communicator") }
        let y = try output.shaped(x.shape)
        y.data.update(from: x.data, count: x.count)
        try communicator.allReduce(y.data, count: y.count, op: .sum)
        floatsReduced += y.count
        guard let bias else { return y }
        if planes {
            let (n, size) = planeSizes(y)
            for s in 0..<n { Kernels.addPlanes(bias.data, into: y.data + s * features * size, planes: features, size: size) }
        } else {
            Kernels.addBias(y.data, bias.data, rows: y.count / features, cols: features)
        }
        return y
    }

    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        if let biasGrad {
            let beta = ctx.gradientBeta(accumulate: accumulate)
            if planes {
                let (n, size) = planeSizes(dy)
                biasGrad.decayGradient(by: beta)
                for s in 0..<n { Kernels.addPlaneSums(dy.data + s * features * size, into: biasGrad.data, planes: features, size: size) }
            } else {
                Kernels.sumRows(dy.data, rows: dy.count / features, cols: features, into: biasGrad.data, beta: beta)
            }
        }
        return needInputGradient ? dy : nil
    }
}

/// Where a parameter tensor of a rewritten model comes from in the serial
/// arena: its `runs`, one after the other (a head slice's q, k and v rows
/// are three).
struct ParameterSource: Sendable {
    /// `rows` runs of `cols` floats, `stride` apart, from `offset`.
    struct Run: Sendable, Equatable {
        let offset: Int
        let stride: Int
        let rows: Int
        let cols: Int
        var count: Int { rows * cols }
    }

    let runs: [Run]
    /// Every tp rank holds the same values (its gradient is the same too).
    let replicated: Bool

    init(runs: [Run], replicated: Bool) {
        self.runs = runs
        self.replicated = replicated
    }

    init(offset: Int, stride: Int, rows: Int, cols: Int, replicated: Bool) {
        self.init(runs: [Run(offset: offset, stride: stride, rows: rows, cols: cols)], replicated: replicated)
    }
}

/// A serial model rewritten for tp rank `rank` of `ranks`.
struct TensorParallelRewrite {
    /// The rewritten top-level layers, one per serial top-level layer (so
    /// pipeline stages cut both at the same places).
    let layers: [Layer]
    /// One entry per parameter tensor of the rewritten model, in its order.
    let sources: [ParameterSource]
    /// How each serial top-level layer runs, for the plan.
    let notes: [String]
    /// The column-split classifier: this rank's first class.
    let classifierOffset: Int?

    init(serial model: Model, rank t: Int, ranks tp: Int, splitClassifier: Bool = false) throws {
        var offsets: [ObjectIdentifier: [Int]] = [:]
        var next = 0
        for l in model.allLayers {
            var o: [Int] = []
            for spec in l.parameterSpecs {
                o.append(next)
                next += spec.shape.count
            }
            offsets[ObjectIdentifier(l)] = o
        }
        var sources: [ParameterSource] = []
        var notes: [String] = []
        var classes: Int?
        let layers = try TensorParallelRewrite.rewrite(
            model.root.layers, t: t, tp: tp, offsets: offsets, sources: &sources, notes: &notes, path: "",
            splitClassifier: splitClassifier, classes: &classes)
        classifierOffset = classes.map { t * $0 / tp }
        self.layers = layers
        self.sources = sources
        self.notes = notes
    }

    /// Rewrites a list of layers (the model's or a residual body's), one
    /// output layer per input layer. With `splitClassifier` (top level
    /// only), the last layer must be a Linear outside any pair, with tp
    /// dividing its classes: it is split by output rows, and its class
    /// count is written to `classes`.
    private static func rewrite(
        _ list: [Layer], t: Int, tp: Int, offsets: [ObjectIdentifier: [Int]], sources: inout [ParameterSource],
        notes: inout [String], path: String, splitClassifier: Bool, classes: inout Int?
    ) throws -> [Layer] {
        // Find the pairs: Linear, element-wise layers, Linear with a matching width.
        var role = [Role](repeating: .replicated, count: list.count)
        for (k, l) in list.enumerated() {
            guard let h = l as? HeadParallelLayer else { continue }
            guard h.heads % tp == 0 else {
                throw ParmlError.invalidArgument(
                    "tensor parallelism: layer \(path)\(k) \(h.planLabel) is split by heads, but tp=\(tp) does not "
                        + "divide its \(h.heads) heads (\(h.heads) % \(tp) = \(h.heads % tp))")
            }
            role[k] = .heads
        }
        var i = 0
        while i < list.count {
            guard let a = Splittable(list[i]) else {
                i += 1
                continue
            }
            var j = i + 1
            while j < list.count, a.admitsBetween(list[j]) { j += 1 }
            guard j < list.count, let b = Splittable(list[j]), b.channels == a.channels, b.inWidth == a.outWidth else {
                i += 1
                continue
            }
            guard a.outWidth % tp == 0 else {
                throw ParmlError.invalidArgument(
                    "tensor parallelism: layer \(path)\(i) \(a.layer.planLabel) and layer \(path)\(j) "
                        + "\(b.layer.planLabel) form a column/row pair, but tp=\(tp) does not divide "
                        + (a.channels ? "the \(a.outWidth) channels between them" : "the width \(a.outWidth) between them"))
            }
            role[i] = .column
            for k in (i + 1)..<j { role[k] = .inside(width: a.outWidth, channels: a.channels) }
            role[j] = .row
            i = j + 1
        }
        if splitClassifier {
            for (k, l) in list.enumerated() where k < list.count - 1 {
                guard let e = l as? VocabularyParallelLayer else { continue }
                try checkVocabulary(e, tp: tp, name: "\(path)\(k)")
                role[k] = .vocabulary
            }
        }
        if splitClassifier, let v = list.last as? VocabularyParallelLayer {
            try checkVocabulary(v, tp: tp, name: "\(path)\(list.count - 1)")
            role[list.count - 1] = .vocabularyClassifier
            classes = v.vocabulary
        } else if splitClassifier {
            let k = list.count - 1
            guard k >= 0, let c = list[k] as? MatrixLayer else {
                let what = k >= 0 ? list[k].planLabel : "nothing"
                throw ParmlError.invalidArgument("split_classifier: the model's last layer \(k) is \(what), not a linear classifier")
            }
            if case .row = role[k] {
                throw ParmlError.invalidArgument(
                    "split_classifier: the last layer \(k) \(c.planLabel) is already the row-parallel half "
                        + "of a column/row pair (its logits are whole after the pair's all-reduce); leave split_classifier off")
            }
            guard c.outFeatures % tp == 0 else {
                throw ParmlError.invalidArgument(
                    "split_classifier: tp=\(tp) does not divide the \(c.outFeatures) classes of layer \(k) \(c.planLabel)")
            }
            // ShardedCrossEntropy passes class indices as floats.
            guard c.outFeatures <= 1 << 24 else {
                throw ParmlError.invalidArgument("split_classifier: layer \(k) has \(c.outFeatures) classes; at most 2^24 can be split")
            }
            role[k] = .classifier
            classes = c.outFeatures
        }
        var out: [Layer] = []
        for (k, l) in list.enumerated() {
            let own = offsets[ObjectIdentifier(l)] ?? []
            let name = "\(path)\(k)"
            switch role[k] {
            case .column, .classifier:
                let a = Splittable(l)!
                let o = a.outWidth / tp
                let slice = try a.column(o)
                // Weight rows t·o..<(t+1)·o, each in·taps long.
                let rowLength = a.inWidth * a.taps
                sources.append(ParameterSource(offset: own[0] + t * o * rowLength, stride: rowLength, rows: o, cols: rowLength, replicated: false))
                if a.hasBias { sources.append(ParameterSource(offset: own[1] + t * o, stride: o, rows: 1, cols: o, replicated: false)) }
                out.append(Sequential([TensorParallelEnter(), slice]))
                if case .classifier = role[k] {
                    notes.append(
                        "\(name): column-parallel classifier \(l.planLabel), \(o) classes per rank; " + shardedLossNote)
                } else {
                    notes.append("\(name): column-parallel \(l.planLabel), \(o) output \(a.unit) per rank; all-reduce of dx backward")
                }
            case .vocabulary, .vocabularyClassifier:
                let v = l as! VocabularyParallelLayer
                let rows = v.vocabulary / tp
                let slice = try v.vocabularySlice(rank: t, ranks: tp)
                sources.append(ParameterSource(offset: own[0] + t * rows * v.features, stride: v.features, rows: rows, cols: v.features, replicated: false))
                if case .vocabulary = role[k] {
                    out.append(Sequential([slice, TensorParallelReduce(features: v.features, bias: false)]))
                    notes.append(
                        "\(name): vocabulary-parallel \(l.planLabel), ids \(t * rows)..<\((t + 1) * rows) on rank \(t) "
                            + "(rows \(rows) of \(v.vocabulary) per rank); all-reduce of the output forward")
                } else {
                    out.append(Sequential([TensorParallelEnter(), slice]))
                    notes.append(
                        "\(name): vocabulary-parallel classifier \(l.planLabel), \(rows) classes per rank; " + shardedLossNote)
                }
            case .row:
                let b = Splittable(l)!
                let c = b.inWidth / tp
                let slice = try b.row(c)
                // In each of the out weight rows, the taps of inputs t·c..<(t+1)·c.
                sources.append(
                    ParameterSource(offset: own[0] + t * c * b.taps, stride: b.inWidth * b.taps, rows: b.outWidth, cols: c * b.taps, replicated: false))
                if b.hasBias {
                    sources.append(ParameterSource(offset: own[1], stride: b.outWidth, rows: 1, cols: b.outWidth, replicated: true))
                }
                out.append(Sequential([slice, TensorParallelReduce(features: b.outWidth, bias: b.hasBias, planes: b.channels)]))
                notes.append("\(name): row-parallel \(l.planLabel), \(c) input \(b.unit) per rank; all-reduce of y forward, bias after it")
            case .heads:
                let h = l as! HeadParallelLayer
                let slice = try h.headSlice(rank: t, ranks: tp)
                let specs = slice.layer.parameterSpecs
                guard specs.count == slice.sources.count,
                    zip(specs, slice.sources).allSatisfy({ spec, runs in runs.reduce(0) { $0 + $1.rows * $1.cols } == spec.shape.count })
                else { throw ParmlError.internal("\(l.kind): a head slice's sources do not match its parameters") }
                for runs in slice.sources {
                    sources.append(
                        ParameterSource(
                            runs: runs.map { ParameterSource.Run(offset: own[$0.tensor] + $0.offset, stride: $0.stride, rows: $0.rows, cols: $0.cols) },
                            replicated: false))
                }
                let bias = h.outputBiasTensor
                if let bias { sources.append(ParameterSource(offset: own[bias], stride: h.features, rows: 1, cols: h.features, replicated: true)) }
                out.append(Sequential([TensorParallelEnter(), slice.layer, TensorParallelReduce(features: h.features, bias: bias != nil)]))
                let n = h.heads / tp
                notes.append(
                    "\(name): \(h.planLabel) split by heads, \(n) of \(h.heads) per rank (rank r: heads r·\(n)..<(r+1)·\(n)): "
                        + "its input projections' rows for them column-parallel, its output projection's columns row-parallel; "
                        + "all-reduce of the output forward\(bias == nil ? "" : " (bias after it)"), of dx backward")
            case .inside(let width, channels: false):
                guard let e = l as? ElementwiseLayer else { throw ParmlError.internal("\(l.kind) inside a pair is not element-wise") }
                out.append(try e.featureSlice(start: t * width / tp, rowWidth: width))
                notes.append("\(name): \(l.kind) on each rank's \(width / tp) of \(width) features")
            case .inside(let width, channels: true):
                guard let e = l as? ChannelwiseLayer else { throw ParmlError.internal("\(l.kind) inside a pair does not act per channel") }
                let n = width / tp
                let slice = try e.channelSlice(start: t * n, count: n, of: width)
                // Per-channel parameters (channels first): each tensor's rows t·n..<(t+1)·n.
                let specs = l.parameterSpecs
                guard slice.parameterSpecs.count == specs.count, specs.allSatisfy({ $0.shape.rank >= 1 && $0.shape[0] == width }) else {
                    throw ParmlError.internal("\(l.kind): a channel slice's parameters are not rows of the layer's per-channel tensors")
                }
                for (spec, offset) in zip(specs, own) {
                    let per = spec.shape.count / width
                    sources.append(ParameterSource(offset: offset + t * n * per, stride: n * per, rows: 1, cols: n * per, replicated: false))
                }
                out.append(slice)
                notes.append("\(name): \(l.kind) on each rank's \(n) of \(width) channels")
            case .replicated:
                if let r = l as? BlockLayer {
                    notes.append("\(name): \(r.kind) block:")
                    var none: Int?
                    let body = try rewrite(
                        r.body.layers, t: t, tp: tp, offsets: offsets, sources: &sources, notes: &notes, path: name + ".",
                        splitClassifier: false, classes: &none)
                    out.append(r.withBody(Sequential(body)))
                    continue
                }
                let copy = try l.replicate()
                if let d = copy as? RandomizedLayer, let orig = l as? RandomizedLayer { d.pinnedLayerID = orig.layerID }
                for (spec, offset) in zip(l.parameterSpecs, own) {
                    let n = spec.shape.count
                    sources.append(ParameterSource(offset: offset, stride: n, rows: 1, cols: n, replicated: true))
                }
                out.append(copy)
                let why = (l as? ChannelMatrixLayer)?.channelSplitRefusal.map { ": \($0)" } ?? ""
                notes.append("\(name): \(l.planLabel) replicated (whole on every tp rank)\(why)")
            }
        }
        return out
    }

    private enum Role {
        case replicated, column, row, classifier, heads, vocabulary, vocabularyClassifier
        /// Between the halves of a pair over `width` features (or NCHW channels).
        case inside(width: Int, channels: Bool)
    }

    /// A layer a column/row pair can split, matrix or convolution alike: a
    /// weight of `outWidth` rows, each `inWidth` runs of `taps` floats, and a
    /// bias of `outWidth` when `hasBias`.
    private struct Splittable {
        let layer: Layer
        let inWidth: Int
        let outWidth: Int
        let taps: Int
        let hasBias: Bool
        /// Splits NCHW channels (a convolution) rather than the last dimension's features.
        let channels: Bool
        /// The layer's column slice over `o` outputs, and its row slice over `c` inputs.
        let column: (_ o: Int) throws -> Layer
        let row: (_ c: Int) throws -> Layer

        init?(_ l: Layer) {
            if let m = l as? MatrixLayer {
                (inWidth, outWidth, taps, hasBias, channels) = (m.inFeatures, m.outFeatures, 1, m.hasBias, false)
                (column, row) = ({ try m.columnSlice(outFeatures: $0) }, { try m.rowSlice(inFeatures: $0) })
            } else if let c = l as? ChannelMatrixLayer, c.channelSplitRefusal == nil {
                (inWidth, outWidth, taps, hasBias, channels) = (c.inChannels, c.outChannels, c.tapsPerChannel, c.hasBias, true)
                (column, row) = ({ try c.outputChannelSlice(outChannels: $0) }, { try c.inputChannelSlice(inChannels: $0) })
            } else {
                return nil
            }
            layer = l
        }

        var unit: String { channels ? "channels" : "features" }

        /// Whether `l` may run on a slice between this layer and its partner.
        func admitsBetween(_ l: Layer) -> Bool { channels ? l is ChannelwiseLayer : l is ElementwiseLayer }
    }

    /// What a split classifier's loss exchanges, for the plan.
    private static let shardedLossNote =
        "softmax cross-entropy on the sharded logits (not gathered): all-reduces of the row maxima (N·tp·2 floats) and "
        + "Σ exp (N·2) forward, of dx backward"

    /// tp must divide the vocabulary, and ids (and classes) travel as floats.
    private static func checkVocabulary(_ v: VocabularyParallelLayer, tp: Int, name: String) throws {
        guard v.vocabulary % tp == 0 else {
            throw ParmlError.invalidArgument(
                "split_classifier: tp=\(tp) does not divide the vocabulary of layer \(name) \(v.planLabel) "
                    + "(\(v.vocabulary) % \(tp) = \(v.vocabulary % tp)); pad it to a multiple of tp, as nanoGPT pads GPT-2's 50257 to 50304")
        }
        guard v.vocabulary <= 1 << 24 else {
            throw ParmlError.invalidArgument("split_classifier: layer \(name) has a vocabulary of \(v.vocabulary); at most 2^24 can be split")
        }
    }

    /// Builds the rewritten model with the serial model's values.
    func makeModel(from serial: Model) throws -> Model {
        let m = Model()
        // Copies: every data-parallel replica gets layers of its own.
        for l in layers { try m.add(try l.replicate()) }
        guard let src = serial.parameters else { throw ParmlError.internal("unbuilt model") }
        // Every local parameter comes from the serial arena: nothing to draw.
        try m.restore(seed: serial.seed ?? 0) { arena, _ in copy(from: src.data, into: arena, model: m) }
        return m
    }

    /// Serial arena → this rank's arena.
    func copy(from serial: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, model: Model) {
        forEachRun(in: 0..<model.parameterCount, model: model) { l, s, count in
            (local + l).update(from: serial + s, count: count)
        }
    }

    /// This rank's arena → serial arena, for `range` of its arena (its
    /// stage), skipping replicated parameters unless `replicated`.
    func copyBack(from local: UnsafePointer<Float>, into serial: UnsafeMutablePointer<Float>, model: Model, range: Range<Int>, replicated: Bool) {
        forEachRun(in: range, model: model, replicated: replicated) { l, s, count in
            (serial + s).update(from: local + l, count: count)
        }
    }

    /// Calls `body(local, serial, count)` for each run of `count` elements
    /// of this rank's arena slice `range` that sit contiguously in the
    /// serial arena (at local index `local`, serial index `serial`);
    /// replicated parameters only when `replicated`.
    func forEachRun(in range: Range<Int>, model: Model, replicated: Bool = true, _ body: (Int, Int, Int) -> Void) {
        for (info, s) in zip(model.parameterInfo, sources) where replicated || !s.replicated {
            var start = info.offset  // of the run in this rank's arena
            for run in s.runs {
                for r in 0..<run.rows {
                    let lo = max(start + r * run.cols, range.lowerBound)
                    let hi = min(start + (r + 1) * run.cols, range.upperBound)
                    if lo < hi { body(lo, run.offset + r * run.stride + (lo - start - r * run.cols), hi - lo) }
                }
                start += run.count
            }
        }
    }

    /// Arena ranges of this rank's parameters that no other tp rank holds.
    func shardedRanges(model: Model) -> [Range<Int>] {
        zip(model.parameterInfo, sources).compactMap { info, s in s.replicated ? nil : info.offset..<(info.offset + info.count) }
    }
}

/// What a tp rank needs to keep the host's (serial) model in step with its
/// rewritten one: the rewrite and the serial model.
final class TensorParallelSync {
    let rewrite: TensorParallelRewrite
    let serial: Model
    /// Every tp rank's rewrite (same arena layout, different slices).
    let peers: [TensorParallelRewrite]

    init(rewrite: TensorParallelRewrite, serial: Model, peers: [TensorParallelRewrite]) {
        self.rewrite = rewrite
        self.serial = serial
        self.peers = peers
    }

    /// Tp rank `peer`'s arena values for `range`, held at `local` (element
    /// `origin` first), into the serial model.
    func store(peer: Int, from local: UnsafePointer<Float>, origin: Int, model: Model, range: Range<Int>, replicated: Bool) throws {
        guard let dst = serial.parameters else { throw ParmlError.internal("unbuilt model") }
        peers[peer].forEachRun(in: range, model: model, replicated: replicated) { l, s, count in
            (dst.data + s).update(from: local + (l - origin), count: count)
        }
    }

    /// The serial model's values into `model`'s arena (after the host set them).
    func load(into model: Model) throws {
        guard let src = serial.parameters, let dst = model.parameters else { throw ParmlError.internal("unbuilt model") }
        rewrite.copy(from: src.data, into: dst.data, model: model)
    }

    /// `model`'s parameters in `range` back into the serial model, so the
    /// host reads (predicts, evaluates, saves) the trained values.
    func store(from model: Model, range: Range<Int>, replicated: Bool) throws {
        guard let src = model.parameters, let dst = serial.parameters else { throw ParmlError.internal("unbuilt model") }
        rewrite.copyBack(from: src.data, into: dst.data, model: model, range: range, replicated: replicated)
    }

    /// Gives every tensor-parallel layer of `model` this rank's communicator.
    static func attach(_ comm: Communicator?, to model: Model) {
        for l in model.allLayers { (l as? TensorParallelLayer)?.communicator = comm }
    }
}
