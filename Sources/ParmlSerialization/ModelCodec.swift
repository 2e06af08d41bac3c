import CParmlProto
import ParmlModel
import ParmlTensor

/// Model ↔ parml.Model. Layers are written depth-first with their nesting
/// depth (a residual's body follows it one level deeper), so the schema has
/// no recursive message and protobuf-c's decoding depth is fixed.
enum ModelCodec {
    typealias LayerList = UnsafeMutablePointer<UnsafeMutablePointer<Parml__Layer>?>

    /// Fills `message` from an initialised model; tensor data points into the
    /// model's arena (keep the model alive until packed).
    static func fill(_ message: UnsafeMutablePointer<Parml__Model>, from model: Model, arena: PackArena) throws {
        guard let seed = model.seed, let values = model.parameters else {
            throw ParmlError.state("the model is not initialised; initialise it first")
        }
        parml__model__init(message)
        message.pointee.magic = try arena.string(FileFormat.modelMagic)
        message.pointee.format_version = FileFormat.version
        message.pointee.init_seed = seed
        var flat: [(layer: Layer, depth: Int)] = []
        func visit(_ l: Layer, depth: Int) {
            flat.append((l, depth))
            if let r = l as? Residual { for c in r.body.layers { visit(c, depth: depth + 1) } }
        }
        for l in model.root.layers { visit(l, depth: 0) }
        let list = try arena.allocate(UnsafeMutablePointer<Parml__Layer>?.self, count: flat.count)
        // Parameter tensors are in parameterInfo in the same depth-first order.
        var next = 0
        for (i, entry) in flat.enumerated() {
            let m = try arena.allocate(Parml__Layer.self, count: 1)
            try describe(entry.layer, depth: entry.depth, into: m)
            let specs = entry.layer.parameterSpecs
            if !specs.isEmpty {
                let tensors = try arena.allocate(UnsafeMutablePointer<Parml__Tensor>?.self, count: specs.count)
                for k in specs.indices {
                    let info = model.parameterInfo[next]
                    next += 1
                    let t = try arena.allocate(Parml__Tensor.self, count: 1)
                    let view = Tensor(view: values.data + info.offset, shape: info.shape, owner: values)
                    try TensorCodec.fill(t, from: view, name: info.name, arena: arena)
                    tensors[k] = t
                }
                m.pointee.n_parameters = specs.count
                m.pointee.parameters = tensors
            }
            list[i] = m
        }
        message.pointee.n_layers = flat.count
        message.pointee.layers = list
    }

    /// A layer's kind and attributes.
    private static func describe(_ layer: Layer, depth: Int, into m: UnsafeMutablePointer<Parml__Layer>) throws {
        parml__layer__init(m)
        m.pointee.depth = UInt32(depth)
        switch layer {
        case let l as Linear:
            m.pointee.kind = PARML__LAYER__KIND__LINEAR
            m.pointee.in_features = Int64(l.inFeatures)
            m.pointee.out_features = Int64(l.outFeatures)
            m.pointee.bias = l.hasBias ? 1 : 0
        case let a as Activation:
            switch a.function {
            case .relu: m.pointee.kind = PARML__LAYER__KIND__RELU
            case .gelu: m.pointee.kind = PARML__LAYER__KIND__GELU
            case .tanh: m.pointee.kind = PARML__LAYER__KIND__TANH
            case .sigmoid: m.pointee.kind = PARML__LAYER__KIND__SIGMOID
            }
        case let n as LayerNorm:
            m.pointee.kind = PARML__LAYER__KIND__LAYER_NORM
            m.pointee.features = Int64(n.features)
            m.pointee.eps = n.eps
        case let d as Dropout:
            m.pointee.kind = PARML__LAYER__KIND__DROPOUT
            m.pointee.p = d.probability
        case is Flatten:
            m.pointee.kind = PARML__LAYER__KIND__FLATTEN
        case is Residual:
            m.pointee.kind = PARML__LAYER__KIND__RESIDUAL
        default:
            throw ParmlError.unsupported("layer kind '\(layer.kind)' has no file representation yet")
        }
    }

    /// A new initialised model from a message, checked completely before
    /// anything is allocated in proportion to what the message declares:
    /// every parameter tensor must carry its data, so the arena is never
    /// larger than the input.
    static func model(from m: Parml__Model) throws -> Model {
        let (model, tensors) = try layers(from: m)
        try model.restore(seed: m.init_seed) { arena, infos in try copy(tensors, into: arena, infos) }
        return model
    }

    /// Copies checked parameter messages into an arena laid out as `infos`.
    static func copy(_ tensors: [Parml__Tensor], into arena: UnsafeMutablePointer<Float>, _ infos: [ParameterInfo]) throws {
        guard infos.count == tensors.count else {
            throw ParmlError.internal("model has \(infos.count) parameter tensors, the file \(tensors.count)")
        }
        for (info, t) in zip(infos, tensors) {
            guard t.data.len == info.count * MemoryLayout<Float>.stride else {
                throw ParmlError.internal("parameter \(info.name): \(t.data.len) bytes for \(info.count) values")
            }
            TensorCodec.copyData(t, to: arena + info.offset)
        }
    }

    /// The model's layers (not yet built) and its checked parameter
    /// messages in arena order: everything `model(from:)` does but allocate.
    static func layers(from m: Parml__Model) throws -> (Model, [Parml__Tensor]) {
        try FileFormat.checkHeader(magic: m.magic, version: m.format_version, expected: FileFormat.modelMagic, what: "model file")
        guard m.n_layers > 0, let list = m.layers else { throw ParmlError.format("the model has no layers") }
        let model = Model()
        var open = 0
        var tensors: [Parml__Tensor] = []
        for i in 0..<m.n_layers {
            guard let lp = list[i] else { throw ParmlError.format("layer \(i) is missing") }
            let rec = lp.pointee
            let depth = Int(rec.depth)
            guard depth <= open else {
                throw ParmlError.format("layer \(i) has depth \(depth) but only \(open) residual block(s) are open before it")
            }
            var specs: [ParameterSpec] = []
            do {
                while open > depth {
                    try model.endResidual()
                    open -= 1
                }
                if rec.kind == PARML__LAYER__KIND__RESIDUAL {
                    guard open < FileFormat.maxNesting else {
                        throw ParmlError.format("residual blocks nest deeper than \(FileFormat.maxNesting) at layer \(i)")
                    }
                    try model.beginResidual()
                    open += 1
                } else {
                    let l = try layer(from: rec, index: i)
                    specs = l.parameterSpecs
                    try model.add(l)
                }
            } catch let e as ParmlError where e.kind != "format" {
                throw ParmlError.format("layer \(i): \(e.message)")
            }
            guard rec.n_parameters == specs.count else {
                throw ParmlError.format("layer \(i) (kind \(rec.kind.rawValue)) has \(rec.n_parameters) parameter tensors, expected \(specs.count)")
            }
            for k in 0..<rec.n_parameters {
                let t = try TensorCodec.element(rec.parameters, k, what: "layer \(i) parameter \(k)")
                let s = try TensorCodec.shape(of: t, what: "layer \(i) parameter \(k)")
                guard s == specs[k].shape else {
                    throw ParmlError.format("layer \(i) parameter '\(specs[k].name)' has shape \(s), the layer needs \(specs[k].shape)")
                }
                tensors.append(t)
            }
        }
        do {
            while open > 0 {
                try model.endResidual()
                open -= 1
            }
        } catch let e as ParmlError {
            throw ParmlError.format("the last residual block: \(e.message)")
        }
        return (model, tensors)
    }

    /// An unbound layer from its record (not residual).
    private static func layer(from rec: Parml__Layer, index: Int) throws -> Layer {
        func size(_ v: Int64, _ name: String) throws -> Int {
            guard v >= 1, v <= Int64(Int32.max) else { throw ParmlError.format("layer \(index): \(name) = \(v) is outside 1...2^31-1") }
            return Int(v)
        }
        switch rec.kind {
        case PARML__LAYER__KIND__LINEAR:
            return try Linear(
                inFeatures: size(rec.in_features, "in_features"), outFeatures: size(rec.out_features, "out_features"),
                bias: rec.bias != 0)
        case PARML__LAYER__KIND__RELU: return Activation(.relu)
        case PARML__LAYER__KIND__GELU: return Activation(.gelu)
        case PARML__LAYER__KIND__TANH: return Activation(.tanh)
        case PARML__LAYER__KIND__SIGMOID: return Activation(.sigmoid)
        case PARML__LAYER__KIND__LAYER_NORM: return try LayerNorm(features: size(rec.features, "features"), eps: rec.eps)
        case PARML__LAYER__KIND__DROPOUT: return try Dropout(probability: rec.p)
        case PARML__LAYER__KIND__FLATTEN: return Flatten()
        default:
            throw ParmlError.format("layer \(index) has kind \(rec.kind.rawValue), unknown to this version")
        }
    }
}

/// A model as a parml.Model message (parml_model_save, _serialize).
public enum ModelFile {
    /// Builds the message for `model` and hands it to `body` (valid only there).
    private static func withMessage<R>(_ model: Model, _ body: (UnsafePointer<ProtobufCMessage>) throws -> R) throws -> R {
        let arena = PackArena()
        let m = try arena.allocate(Parml__Model.self, count: 1)
        try ModelCodec.fill(m, from: model, arena: arena)
        return try withExtendedLifetime((model, arena)) {
            try body(UnsafeRawPointer(m).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    public static func encode(_ model: Model) throws -> EncodedBytes {
        try withMessage(model) { try FileFormat.packSealed($0) }
    }

    /// Writes the model file to `path` atomically, packing straight into it.
    public static func write(_ model: Model, to path: String) throws {
        try withMessage(model) { m in
            try FileIO.writeAtomically(to: path) { fd, tmp in try FileFormat.packSealed(m, to: fd, path: tmp) }
        }
    }

    /// A model from a model file's bytes, or from a checkpoint's (its model:
    /// a host resuming elsewhere needs no code that rebuilds the layers).
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Model { try decode(bytes, knownCRC: nil) }

    /// The same from a file read by FileIO.readSealed (whose CRC is known).
    public static func decode(_ file: EncodedBytes) throws -> Model { try decode(file.bytes, knownCRC: file.crc) }

    private static func decode(_ bytes: UnsafeRawBufferPointer, knownCRC: (covered: Int, value: UInt32)?) throws -> Model {
        if FileFormat.startsWithMagic(bytes, FileFormat.checkpointMagic) {
            let u = try FileFormat.checkpoint(bytes, known: knownCRC, what: "checkpoint file")
            return try withExtendedLifetime(u) {
                guard let m = u.message.pointee.model else { throw ParmlError.format("the checkpoint has no model") }
                return try ModelCodec.model(from: m.pointee)
            }
        }
        let u = try FileFormat.model(bytes, known: knownCRC)
        return try withExtendedLifetime(u) { try ModelCodec.model(from: u.message.pointee) }
    }
}
