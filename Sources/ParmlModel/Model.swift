import ParmlTensor

/// Where one parameter tensor lives in the model's flat arena.
public struct ParameterInfo: Sendable {
    /// The stable dotted name, as PyTorch's state_dict keys an nn.Sequential:
    /// the layer's index among its siblings, one per level of nesting, then
    /// the parameter: "0.weight", and "3.1.bias" for layer 1 of the
    /// residual block at index 3.
    public let name: String
    public let shape: Shape
    public let offset: Int
    public let count: Int
    public let initializer: Initializer
    /// Whether weight decay applies when the optimizer decays by kind.
    public let decays: Bool
    /// For a tied copy (`ParameterSpec.tie`): the index in `parameterInfo`
    /// of the parameter it is. Nil for a parameter of its own.
    public let tiedTo: Int?
    /// False for state a layer updates itself (`ParameterSpec.trained`).
    public let trained: Bool
}

/// A network: a root sequence of layers (residual blocks nest), and every
/// parameter in one flat arena, gradients in a second one of the same layout.
/// One arena means the optimizer runs one loop, and a collective (all-reduce,
/// reduce-scatter for ZeRO) covers all gradients in a few calls.
public final class Model {
    public let root = Sequential()
    private var openBlocks: [Sequential] = []
    public private(set) var parameterInfo: [ParameterInfo] = []
    public private(set) var parameters: Tensor?
    public private(set) var gradients: Tensor?
    /// The layers' gradient views, one per `parameterInfo` entry: what
    /// `pointGradients` moves.
    private var gradientViews: [Tensor] = []
    /// Set by `initialize`; nil until then.
    public private(set) var seed: UInt64?
    /// Changes whenever the parameters are set from outside training
    /// (initialize, setParameters), so replicas know to copy them again.
    public private(set) var parameterVersion = 0
    /// The trainer that last stepped this model (a unique serial; 0:
    /// none): a trainer whose ranks keep copies of the parameters (bf16)
    /// makes them again when another trainer stepped it in between.
    public var lastTrainer: UInt64 = 0
    private var validatedInput: Shape?
    private var validatedOutput: Shape?
    /// Top-level layer indices where the host wants a pipeline stage to
    /// start (`markStageBoundary`); empty lets the trainer balance stages.
    public private(set) var stageStarts: [Int] = []
    /// Set while a trainer keeps only this process's shard of the
    /// parameters between steps (ZeRO-3 under MPI): why reads of the whole
    /// model are refused until it gathers them (Model+Residency.swift).
    public var partialParameters: String?

    public init() {}

    public var isBuilt: Bool { parameters != nil }
    public var isInitialized: Bool { seed != nil }

    /// Number of scalars in the parameter arena (known once built): tied
    /// copies count twice here, once in `namedParameterCount`.
    public var parameterCount: Int { parameters?.count ?? 0 }

    /// The parameter tensors a host sees, names and files hold: every one
    /// but the tied copies, in arena order.
    public var namedParameters: [ParameterInfo] { parameterInfo.filter { $0.tiedTo == nil } }

    /// Scalars in `namedParameters`: what parml_model_get_params copies.
    public var namedParameterCount: Int { namedParameters.reduce(0) { $0 + $1.count } }

    /// Each tied copy with the parameter it is (arena slices of equal length).
    public var tiedParameters: [(source: Range<Int>, copy: Range<Int>)] {
        parameterInfo.compactMap { info in
            info.tiedTo.map { j in
                let s = parameterInfo[j]
                return (s.offset..<(s.offset + s.count), info.offset..<(info.offset + info.count))
            }
        }
    }

    /// Copies every tied parameter's source into its copy, after anything
    /// that writes parameters from outside training (initialisation, a
    /// loaded file, set_params): the trainer keeps them equal from then on.
    public func syncTiedParameters() {
        guard let p = parameters else { return }
        for t in tiedParameters { (p.data + t.copy.lowerBound).update(from: p.data + t.source.lowerBound, count: t.copy.count) }
    }

    /// Every layer, depth-first, containers included.
    public var allLayers: [Layer] {
        var out: [Layer] = []
        func visit(_ l: Layer) {
            out.append(l)
            for c in l.children { visit(c) }
        }
        for l in root.layers { visit(l) }
        return out
    }

    /// The arena ranges of parameters that weight decay applies to when the
    /// optimizer decays by kind (adjacent tensors merged).
    public var decayingRanges: [Range<Int>] {
        var out: [Range<Int>] = []
        for info in parameterInfo where info.decays && info.count > 0 {
            let r = info.offset..<(info.offset + info.count)
            if let last = out.last, last.upperBound == r.lowerBound {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// The arena ranges of state the optimizer must not update
    /// (`ParameterSpec.trained` false: batch_norm's running statistics).
    public var frozenRanges: [Range<Int>] {
        parameterInfo.filter { !$0.trained && $0.count > 0 }.map { $0.offset..<($0.offset + $0.count) }
    }

    /// Scalar parameters of each top-level layer (a residual block counts
    /// its whole body). Their arena slices follow one another in this order.
    public var topLevelParameterCounts: [Int] {
        func count(_ l: Layer) -> Int {
            l.parameterSpecs.reduce(0) { $0 + $1.shape.count } + l.children.reduce(0) { $0 + count($1) }
        }
        return root.layers.map(count)
    }

    /// The arena slice that top-level layers `layers` own (pipeline stages
    /// own contiguous runs of top-level layers, so they own one slice each).
    public func parameterRange(ofTopLevelLayers layers: Range<Int>) -> Range<Int> {
        let counts = topLevelParameterCounts
        let lo = counts[..<layers.lowerBound].reduce(0, +)
        return lo..<(lo + counts[layers].reduce(0, +))
    }

    /// Appends a layer to the innermost open residual block, or to the model.
    public func add(_ layer: Layer) throws {
        guard !isBuilt else { throw ParmlError.state("the model is already initialised; layers cannot be added") }
        for spec in layer.parameterSpecs {
            if let tie = spec.tie, Model.tieSource(tie, shape: spec.shape, among: allLayers) == nil {
                throw ParmlError.invalidArgument(
                    "\(layer.kind): its \(spec.name) \(spec.shape) is tied to the \(tie.parameter) of a \(tie.kind) layer of that shape, "
                        + "and the model has none before it; add the \(tie.kind) first")
            }
        }
        (openBlocks.last ?? root).append(layer)
        forgetValidatedShapes()
    }

    /// The cached shape check describes the old layer list: drop it.
    private func forgetValidatedShapes() {
        validatedInput = nil
        validatedOutput = nil
    }

    /// Makes the next top-level layer start a pipeline stage: with
    /// boundaries marked, a pipelined trainer cuts there (pp must be the
    /// boundary count + 1) instead of balancing by the layers' cost (LayerCost).
    public func markStageBoundary() throws {
        guard !isBuilt else { throw ParmlError.state("the model is already initialised; boundaries cannot be added") }
        guard openBlocks.isEmpty else {
            throw ParmlError.state("a stage boundary cannot fall inside a residual block; close it first")
        }
        let next = root.layers.count
        guard next > 0 else { throw ParmlError.state("a stage boundary needs a layer before it") }
        guard stageStarts.last != next else { throw ParmlError.state("a stage boundary is already marked here") }
        stageStarts.append(next)
    }

    /// The kinds of block `beginBlock(named:)` opens (files name them like layer kinds).
    public static let blockKinds = [Residual.kindName]

    /// Opens the block kind `name` (one of `blockKinds`).
    public func beginBlock(named name: String) throws {
        guard name == Residual.kindName else { throw ParmlError.invalidArgument("no block kind is named '\(name)'") }
        try beginResidual()
    }

    /// Closes the innermost block.
    public func endBlock() throws { try endResidual() }

    /// Opens a residual block: layers added until `endResidual` form its body f, y = x + f(x).
    public func beginResidual() throws {
        guard !isBuilt else { throw ParmlError.state("the model is already initialised; layers cannot be added") }
        let body = Sequential()
        (openBlocks.last ?? root).append(Residual(body))
        openBlocks.append(body)
        forgetValidatedShapes()
    }

    public func endResidual() throws {
        guard !isBuilt else { throw ParmlError.state("the model is already initialised; layers cannot be added") }
        guard let body = openBlocks.last else { throw ParmlError.state("end_residual without begin_residual") }
        // Checked before closing: a failed call leaves the block open.
        guard !body.layers.isEmpty else { throw ParmlError.invalidArgument("a residual block needs at least one layer") }
        openBlocks.removeLast()
        forgetValidatedShapes()
    }

    /// Allocates the parameter arena and binds every layer to its slices.
    public func build() throws { try build(sharing: nil, gradients: nil) }

    /// Builds with `shared` (when given) as the parameter arena instead of a
    /// new one: a replica that reads another model's parameters in place; and
    /// likewise `sharedGradients` for the gradient arena.
    private func build(sharing shared: Tensor?, gradients sharedGradients: Tensor?) throws {
        guard !isBuilt else { return }
        guard openBlocks.isEmpty else {
            throw ParmlError.state("\(openBlocks.count) residual block(s) still open; call end_residual")
        }
        guard !root.layers.isEmpty else { throw ParmlError.state("the model has no layers") }
        var infos: [ParameterInfo] = []
        var offset = 0
        let layers = allLayers
        let paths = Model.paths(root)
        // Where each layer's first parameter sits in `infos`: ties point there.
        var firstInfo: [ObjectIdentifier: Int] = [:]
        for (index, layer) in layers.enumerated() {
            if let d = layer as? RandomizedLayer { d.layerID = d.pinnedLayerID ?? index }
            firstInfo[ObjectIdentifier(layer)] = infos.count
            for spec in layer.parameterSpecs {
                let n = spec.shape.count
                var tiedTo: Int?
                if let tie = spec.tie {
                    guard let (source, k) = Model.tieSource(tie, shape: spec.shape, among: Array(layers[..<index])),
                        let first = firstInfo[ObjectIdentifier(source)]
                    else {
                        throw ParmlError.invalidArgument("\(layer.kind): no \(tie.kind) layer before it to tie its \(spec.name) to")
                    }
                    tiedTo = first + k
                    if let c = layer as? TiedClassifier, let e = source as? Embedding { e.tiedClassifier = c }  // per-example norms
                }
                infos.append(
                    ParameterInfo(
                        name: "\(paths[index]).\(spec.name)", shape: spec.shape, offset: offset, count: n, initializer: spec.initializer,
                        decays: spec.decays, tiedTo: tiedTo, trained: spec.trained))
                let (sum, overflow) = offset.addingReportingOverflow(n)
                guard !overflow else { throw ParmlError.invalidArgument("the model has too many parameters") }
                offset = sum
            }
        }
        for a in [shared, sharedGradients] {
            if let a, a.count != offset {
                throw ParmlError.internal("shared arena holds \(a.count) values, the layers need \(offset)")
            }
        }
        let values = try shared ?? Tensor(shape: Shape(offset))
        // Untouched pages: under ZeRO ≥ 2 a rank keeps only its shard resident (GradientBuckets).
        let grads = try sharedGradients ?? Tensor(untouched: Shape(offset))
        var k = 0
        var views: [Tensor] = []
        for layer in layers {
            let specs = layer.parameterSpecs
            guard !specs.isEmpty else { continue }
            var v: [Tensor] = []
            var g: [Tensor] = []
            for spec in specs {
                let info = infos[k]
                v.append(Tensor(view: values.data + info.offset, shape: spec.shape, owner: values))
                g.append(Tensor(view: grads.data + info.offset, shape: spec.shape, owner: grads))
                k += 1
            }
            views += g
            layer.bind(values: v, gradients: g)
        }
        gradientViews = views
        parameterInfo = infos
        parameters = values
        gradients = grads
    }

    /// Points the gradient views of the parameters inside `range` (arena
    /// offsets) at `base`, where offset `range.lowerBound` lands: backward
    /// then writes them there rather than into the gradient arena (nil:
    /// back to the arena). Deterministic mode writes a chunk's gradient
    /// straight into its tree leaf this way. No allocation.
    public func pointGradients(in range: Range<Int>, at base: UnsafeMutablePointer<Float>?) throws {
        guard let grads = gradients else { throw ParmlError.state("the model is not built") }
        let target = base ?? grads.data + range.lowerBound
        for (info, view) in zip(parameterInfo, gradientViews)
        where info.offset >= range.lowerBound && info.offset + info.count <= range.upperBound {
            try view.retarget(target + (info.offset - range.lowerBound), shape: view.shape)
        }
    }

    /// The layer a tie names, and the index of the parameter among its specs.
    static func tieSource(_ tie: ParameterTie, shape: Shape, among layers: [Layer]) -> (Layer, Int)? {
        for l in layers where l.kind == tie.kind {
            if let k = l.parameterSpecs.firstIndex(where: { $0.name == tie.parameter && $0.shape == shape && $0.tie == nil }) {
                return (l, k)
            }
        }
        return nil
    }

    /// The dotted path of every layer in `allLayers` order: its index among
    /// its siblings at each level ("3", "3.0"). A residual block's body is
    /// the block's own list, so it adds no level of its own.
    static func paths(_ root: Sequential) -> [String] {
        var out: [String] = []
        func visit(_ l: Layer, _ path: String) {
            out.append(path)
            for c in l.children {
                if let body = c as? Sequential {
                    out.append(path)
                    for (j, inner) in body.layers.enumerated() { visit(inner, "\(path).\(j)") }
                } else {
                    visit(c, path)
                }
            }
        }
        for (i, l) in root.layers.enumerated() { visit(l, "\(i)") }
        return out
    }

    /// The parameter tensor named `name` ("0.weight"), or a clear error
    /// listing the names there are.
    public func parameter(named name: String) throws -> ParameterInfo {
        guard isBuilt else { throw ParmlError.state("the model is not initialised") }
        let named = namedParameters
        if let info = named.first(where: { $0.name == name }) { return info }
        if let copy = parameterInfo.first(where: { $0.name == name }), let j = copy.tiedTo {
            throw ParmlError.invalidArgument("parameter '\(name)' is tied to '\(parameterInfo[j].name)': read and write that one")
        }
        let names = named.map(\.name)
        let shown = names.prefix(12).joined(separator: ", ") + (names.count > 12 ? ", ..." : "")
        throw ParmlError.invalidArgument("the model has no parameter named '\(name)' (its \(names.count): \(shown))")
    }

    /// The parameter tensor named `name`, which must hold `count` values
    /// (a `.shape` error giving its shape otherwise).
    public func parameter(named name: String, count: Int) throws -> ParameterInfo {
        let info = try parameter(named: name)
        guard count == info.count else {
            throw ParmlError.shape("parameter '\(name)' has shape \(info.shape) (\(info.count) values), not \(count)")
        }
        return info
    }

    /// Copies parameter tensor `name` out; `count` must be its element count.
    public func copyParameter(named name: String, to out: UnsafeMutablePointer<Float>, count: Int) throws {
        let info = try parameter(named: name, count: count)
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        try requireWholeParameters("get_param '\(name)'")
        out.update(from: p.data + info.offset, count: info.count)
    }

    /// Overwrites parameter tensor `name`; `count` must be its element count.
    public func setParameter(named name: String, from src: UnsafePointer<Float>, count: Int) throws {
        let info = try parameter(named: name, count: count)
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        // Its tied copy is synced from the arena, which must be whole for that.
        try requireWholeParameters("set_param '\(name)'")
        (p.data + info.offset).update(from: src, count: info.count)
        syncTiedParameters()
        parameterVersion += 1
    }

    /// Builds if needed and draws every parameter from `seed`. Parameter
    /// element i of tensor j gets Philox(seed) stream j, element i: the same
    /// value whatever the layout that later holds it.
    public func initialize(seed: UInt64) throws {
        try BLAS.ensureLoaded()  // forward and backward call OpenBLAS from here on
        try build()
        guard let values = parameters else { throw ParmlError.internal("no parameter arena") }
        let rng = Philox(seed: seed)
        for (j, info) in parameterInfo.enumerated() {
            let p = values.data + info.offset
            switch info.initializer {
            case .uniform(let bound):
                rng.fillUniform(p, count: info.count, stream: RandomStream.parameter(j), low: -bound, high: bound)
            case .constant(let c):
                p.update(repeating: c, count: info.count)
            case .normal(let std):
                rng.fillNormal(p, count: info.count, stream: RandomStream.parameter(j), std: std)
            }
        }
        syncTiedParameters()
        if let g = gradients { Pages.zero(g.data, count: g.count) }
        self.seed = seed
        partialParameters = nil
        parameterVersion += 1
    }

    /// Builds if needed and fills the parameters from `fill` (a loaded file)
    /// instead of drawing them; `seed` is the one they were first drawn from.
    /// `fill` gets the arena and the layout of its tensors.
    public func restore(seed: UInt64, _ fill: (UnsafeMutablePointer<Float>, [ParameterInfo]) throws -> Void) throws {
        try BLAS.ensureLoaded()
        try build()
        guard let values = parameters else { throw ParmlError.internal("no parameter arena") }
        try fill(values.data, parameterInfo)
        syncTiedParameters()
        if let g = gradients { Pages.zero(g.data, count: g.count) }
        self.seed = seed
        partialParameters = nil
        parameterVersion += 1
    }

    /// A model with the same layers, its own activation buffers and gradient
    /// arena (another rank's replica), and either a copy of this model's
    /// parameters or, with `sharingParameters`, this model's parameter arena
    /// itself (ranks that are threads of one process can read one copy).
    /// `sharingGradients` shares the gradient arena too: pipeline stages of
    /// one replica write disjoint ranges of it, and a stage's extra layer
    /// copies (one per micro-batch in flight) accumulate into the same one.
    public func replicate(sharingParameters: Bool = false, sharingGradients: Bool = false) throws -> Model {
        guard let params = parameters, let seed else { throw ParmlError.state("only an initialised model can be replicated") }
        if !sharingParameters { try requireWholeParameters("copying the model") }
        let m = Model()
        for l in root.layers { m.root.append(try l.replicate()) }
        try m.build(sharing: sharingParameters ? params : nil, gradients: sharingGradients ? gradients : nil)
        guard let p = m.parameters, p.count == params.count else { throw ParmlError.internal("replica arena differs") }
        if !sharingParameters { p.data.update(from: params.data, count: params.count) }
        m.seed = seed
        return m
    }

    /// Whether this model reads `other`'s parameter arena.
    public func sharesParameters(with other: Model) -> Bool {
        guard let a = parameters, let b = other.parameters else { return false }
        return a === b
    }

    /// The output shape for an input shape; checks every layer on the way.
    public func outputShape(for input: Shape) throws -> Shape {
        if let v = validatedInput, v == input, let o = validatedOutput { return o }
        guard input.rank >= 1, input[0] >= 1 else { throw ParmlError.shape("input \(input) has no samples") }
        let o = try root.outputShape(for: input)
        validatedInput = input
        validatedOutput = o
        return o
    }

    private func ready() throws {
        guard isInitialized else { throw ParmlError.state("the model is not initialised; initialise it first") }
    }

    /// Runs the layers on x (shape checked first). The result is a buffer
    /// the model owns, valid until its next forward.
    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        try ready()
        try requireWholeParameters("forward")
        _ = try outputShape(for: x.shape)
        return try root.forward(x, ctx)
    }

    /// Back-propagates dL/dy of the last forward into the gradient arena
    /// (overwriting, or adding when `accumulate`).
    public func backward(_ dy: Tensor, _ ctx: PassContext, accumulate: Bool = false) throws {
        try ready()
        _ = try root.backward(dy, ctx, needInputGradient: false, accumulate: accumulate)
    }

    /// Copies the whole arena out (count must equal parameterCount).
    public func copyParameters(to out: UnsafeMutablePointer<Float>) throws {
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        try requireWholeParameters("copying the parameters")
        out.update(from: p.data, count: p.count)
    }

    /// Overwrites the whole arena (tied copies included: they must equal their sources).
    public func setParameters(from src: UnsafePointer<Float>) throws {
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        p.data.update(from: src, count: p.count)
        partialParameters = nil
        parameterVersion += 1
    }

    /// Copies the named parameters out, one after another in arena order
    /// (count must equal namedParameterCount): the host's flat view.
    public func copyNamedParameters(to out: UnsafeMutablePointer<Float>) throws {
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        try requireWholeParameters("get_params")
        var k = 0
        for info in namedParameters {
            (out + k).update(from: p.data + info.offset, count: info.count)
            k += info.count
        }
    }

    /// Overwrites the named parameters from the layout `copyNamedParameters` writes.
    public func setNamedParameters(from src: UnsafePointer<Float>) throws {
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        var k = 0
        for info in namedParameters {
            (p.data + info.offset).update(from: src + k, count: info.count)
            k += info.count
        }
        syncTiedParameters()
        partialParameters = nil
        parameterVersion += 1
    }

    /// Lets `body` write the parameters in place (a loaded checkpoint),
    /// then marks them changed so that replicas copy them again.
    public func updateParameters(_ body: (UnsafeMutablePointer<Float>, [ParameterInfo]) throws -> Void) throws {
        guard let p = parameters else { throw ParmlError.state("the model is not initialised") }
        try body(p.data, parameterInfo)
        syncTiedParameters()
        partialParameters = nil
        parameterVersion += 1
    }

    /// Scalar parameters the layers declare (known before build), each
    /// tied matrix once.
    public var declaredParameterCount: Int {
        allLayers.reduce(0) { $0 + $1.parameterSpecs.reduce(0) { $0 + ($1.tie == nil ? $1.shape.count : 0) } }
    }

    /// One line per layer: kind, attributes, parameter shapes and counts, nesting indented.
    public var summary: String {
        var lines: [String] = []
        func visit(_ l: Layer, depth: Int) {
            let specs = l.parameterSpecs
            var line = String(repeating: "  ", count: depth) + l.kind
            let attributes = l.attributes.text
            if !attributes.isEmpty { line += " " + attributes }
            if !specs.isEmpty {
                let n = specs.reduce(0) { $0 + ($1.tie == nil ? $1.shape.count : 0) }
                line += " " + specs.map { "\($0.name)\($0.shape)" + ($0.tie.map { " (tied to the \($0.kind)'s \($0.parameter))" } ?? "") }
                    .joined(separator: " ") + " params=\(n)"
            }
            lines.append(line)
            if let b = l as? BlockLayer { for c in b.body.layers { visit(c, depth: depth + 1) } }
        }
        for (i, l) in root.layers.enumerated() {
            if stageStarts.contains(i) { lines.append("-- pipeline stage boundary --") }
            visit(l, depth: 0)
        }
        lines.append("total parameters: \(declaredParameterCount)")
        return lines.joined(separator: "\n")
    }
}
