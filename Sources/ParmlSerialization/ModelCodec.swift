import CParmlProto
import ParmlModel
import ParmlTensor

/// Model ↔ parml.Model. Layers are written depth-first with their nesting
/// depth (a residual's body follows it one level deeper), so the schema has
/// no recursive message and protobuf-c's decoding depth is fixed.
enum ModelCodec {
    typealias LayerList = UnsafeMutablePointer<UnsafeMutablePointer<Parml__Layer>?>

    /// Fills `message` from an initialised model; float32 tensor data points
    /// into the model's arena (keep the model alive until packed), bfloat16
    /// data into `arena`.
    static func fill(
        _ message: UnsafeMutablePointer<Parml__Model>, from model: Model, weights: StoredWeights = .float32, arena: PackArena
    ) throws {
        guard let seed = model.seed, let values = model.parameters else {
            throw ParmlError.state("the model is not initialised; initialise it first")
        }
        parml__model__init(message)
        message.pointee.magic = try arena.string(FileFormat.modelMagic)
        message.pointee.format_version = FileFormat.version
        message.pointee.init_seed = seed
        let flat = layerDescriptions(of: model)
        let list = try arena.allocate(UnsafeMutablePointer<Parml__Layer>?.self, count: flat.count)
        // Parameter tensors are in parameterInfo in the same depth-first
        // order; a tied copy is not written (loading fills it from its source).
        var next = 0
        for (i, entry) in flat.enumerated() {
            let m = try arena.allocate(Parml__Layer.self, count: 1)
            try describe(entry.layer, depth: entry.depth, into: m, arena: arena)
            let count = entry.layer.parameterSpecs.count
            let stored = model.parameterInfo[next..<(next + count)].filter { $0.tiedTo == nil }
            next += count
            if !stored.isEmpty {
                let tensors = try arena.allocate(UnsafeMutablePointer<Parml__Tensor>?.self, count: stored.count)
                for (k, info) in stored.enumerated() {
                    let t = try arena.allocate(Parml__Tensor.self, count: 1)
                    let view = Tensor(view: values.data + info.offset, shape: info.shape, owner: values)
                    switch weights {
                    case .float32: try TensorCodec.fill(t, from: view, name: info.name, arena: arena)
                    case .bfloat16: try TensorCodec.fillBFloat16(t, from: view, name: info.name, arena: arena)
                    }
                    tensors[k] = t
                }
                m.pointee.n_parameters = stored.count
                m.pointee.parameters = tensors
            }
            list[i] = m
        }
        message.pointee.n_layers = flat.count
        message.pointee.layers = list
    }

    /// A layer's kind name and attributes (format 2), entries sorted by name.
    private static func describe(_ layer: Layer, depth: Int, into m: UnsafeMutablePointer<Parml__Layer>, arena: PackArena) throws {
        parml__layer__init(m)
        m.pointee.depth = UInt32(depth)
        guard let name = layer is BlockLayer ? layer.kind : layer.descriptor?.name else {
            throw ParmlError.unsupported("layer kind '\(layer.kind)' has no file representation")
        }
        m.pointee.kind_name = try arena.string(name)
        let entries = layer.attributes.entries.sorted { $0.name < $1.name }
        guard !entries.isEmpty else { return }
        let list = try arena.allocate(UnsafeMutablePointer<Parml__Layer__AttributesEntry>?.self, count: entries.count)
        for (k, e) in entries.enumerated() {
            let entry = try arena.allocate(Parml__Layer__AttributesEntry.self, count: 1)
            parml__layer__attributes_entry__init(entry)
            entry.pointee.key = try arena.string(e.name)
            let v = try arena.allocate(Parml__Attribute.self, count: 1)
            parml__attribute__init(v)
            switch e.value {
            case .int(let x):
                v.pointee.value_case = PARML__ATTRIBUTE__VALUE_INT_VALUE
                v.pointee.int_value = x
            case .float(let x):
                v.pointee.value_case = PARML__ATTRIBUTE__VALUE_FLOAT_VALUE
                v.pointee.float_value = x
            case .bool(let x):
                v.pointee.value_case = PARML__ATTRIBUTE__VALUE_BOOL_VALUE
                v.pointee.bool_value = x ? 1 : 0
            case .string(let x):
                v.pointee.value_case = PARML__ATTRIBUTE__VALUE_STRING_VALUE
                v.pointee.string_value = try arena.string(x)
            case .ints(let x):
                v.pointee.value_case = PARML__ATTRIBUTE__VALUE_INTS_VALUE
                let ints = try arena.allocate(Parml__Attribute__Ints.self, count: 1)
                parml__attribute__ints__init(ints)
                let values = try arena.allocate(Int64.self, count: max(x.count, 1))
                for (j, n) in x.enumerated() { values[j] = n }
                ints.pointee.n_values = x.count
                ints.pointee.values = values
                v.pointee.ints_value = ints
            }
            entry.pointee.value = v
            list[k] = entry
        }
        m.pointee.n_attributes = entries.count
        m.pointee.attributes = list
    }

    /// A record's kind name and attribute values as written (format 2).
    private static func kind(of rec: Parml__Layer, index i: Int) throws -> (String, [Attributes.Entry]) {
        guard let name = rec.kind_name, name.pointee != 0 else { throw ParmlError.format("layer \(i) has no kind_name") }
        var entries: [Attributes.Entry] = []
        for k in 0..<rec.n_attributes {
            guard let e = rec.attributes?[k]?.pointee, let key = e.key, let v = e.value?.pointee else {
                throw ParmlError.format("layer \(i) attribute \(k) is missing its name or value")
            }
            let value: AttributeValue
            switch v.value_case {
            case PARML__ATTRIBUTE__VALUE_INT_VALUE: value = .int(v.int_value)
            case PARML__ATTRIBUTE__VALUE_FLOAT_VALUE: value = .float(v.float_value)
            case PARML__ATTRIBUTE__VALUE_BOOL_VALUE: value = .bool(v.bool_value != 0)
            case PARML__ATTRIBUTE__VALUE_STRING_VALUE: value = .string(v.string_value.map { String(cString: $0) } ?? "")
            case PARML__ATTRIBUTE__VALUE_INTS_VALUE:
                let ints = v.ints_value?.pointee
                value = .ints((0..<(ints?.n_values ?? 0)).map { ints!.values[$0] })
            default:
                throw ParmlError.format("layer \(i) attribute '\(String(cString: key))' has no value")
            }
            entries.append(Attributes.Entry(name: String(cString: key), value: value))
        }
        return (String(cString: name), entries)
    }

    /// A new initialised model from a message, checked completely before
    /// anything is allocated in proportion to what the message declares:
    /// every parameter tensor must carry its data, so the arena is never
    /// larger than the input.
    static func model(from m: Parml__Model, allowBFloat16: Bool) throws -> Model {
        let (model, tensors) = try layers(from: m, allowBFloat16: allowBFloat16)
        try model.restore(seed: m.init_seed) { arena, infos in try copy(tensors, into: arena, infos) }
        return model
    }

    /// How a checked model message stores its parameters: bfloat16 when any
    /// parameter is (parml writes all or none).
    static func storedWeights(of m: Parml__Model) -> StoredWeights {
        for i in 0..<m.n_layers {
            guard let l = m.layers?[i]?.pointee else { continue }
            for k in 0..<l.n_parameters where l.parameters?[k].map({ TensorCodec.isBFloat16($0.pointee) }) == true {
                return .bfloat16
            }
        }
        return .float32
    }

    /// Copies checked parameter messages into an arena laid out as `infos`
    /// (tied copies are skipped: the model fills them from their sources),
    /// widening bfloat16 ones.
    static func copy(_ tensors: [Parml__Tensor], into arena: UnsafeMutablePointer<Float>, _ all: [ParameterInfo]) throws {
        let infos = all.filter { $0.tiedTo == nil }
        guard infos.count == tensors.count else {
            throw ParmlError.internal("model has \(infos.count) parameter tensors, the file \(tensors.count)")
        }
        for (info, t) in zip(infos, tensors) {
            guard t.data.len == info.count * (TensorCodec.isBFloat16(t) ? 2 : MemoryLayout<Float>.stride) else {
                throw ParmlError.internal("parameter \(info.name): \(t.data.len) bytes for \(info.count) values")
            }
            TensorCodec.copyParameter(t, to: arena + info.offset)
        }
    }

    /// The model's layers (not yet built) and its checked parameter
    /// messages in arena order: everything `model(from:)` does but allocate.
    /// `allowBFloat16`: model files may hold bfloat16 parameters, checkpoints not.
    static func layers(from m: Parml__Model, allowBFloat16: Bool) throws -> (Model, [Parml__Tensor]) {
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
            var specs: [ParameterSpec] = []  // the ones the file stores (not tied copies)
            let (name, attributes) = m.format_version == 1 ? try LegacyLayerRecord.kind(of: rec, index: i) : try kind(of: rec, index: i)
            do {
                while open > depth {
                    try model.endBlock()
                    open -= 1
                }
                if Model.blockKinds.contains(name) {
                    guard attributes.isEmpty else { throw ParmlError.format("layer \(i): a \(name) block has no attributes") }
                    guard open < FileFormat.maxNesting else {
                        throw ParmlError.format("blocks nest deeper than \(FileFormat.maxNesting) at layer \(i)")
                    }
                    try model.beginBlock(named: name)
                    open += 1
                } else {
                    let l = try LayerKinds.kind(named: name).make(attributes)
                    specs = l.parameterSpecs.filter { $0.tie == nil }
                    try model.add(l)
                }
            } catch let e as ParmlError where e.kind != "format" {
                throw ParmlError.format("layer \(i): \(e.message)")
            }
            guard rec.n_parameters == specs.count else {
                throw ParmlError.format("layer \(i) (\(name)) has \(rec.n_parameters) parameter tensors, expected \(specs.count)")
            }
            for k in 0..<rec.n_parameters {
                let t = try TensorCodec.element(rec.parameters, k, what: "layer \(i) parameter \(k)")
                let s = try TensorCodec.parameterShape(of: t, what: "layer \(i) parameter \(k)", allowBFloat16: allowBFloat16)
                guard s == specs[k].shape else {
                    throw ParmlError.format("layer \(i) parameter '\(specs[k].name)' has shape \(s), the layer needs \(specs[k].shape)")
                }
                tensors.append(t)
            }
        }
        do {
            while open > 0 {
                try model.endBlock()
                open -= 1
            }
        } catch let e as ParmlError {
            throw ParmlError.format("the last block: \(e.message)")
        }
        return (model, tensors)
    }
}

/// How a model file stores its parameters: float32 (the default, exact) or
/// bfloat16, rounded to nearest even for exchange at half the size.
public enum StoredWeights: Sendable {
    case float32, bfloat16

    public var name: String { self == .float32 ? "float32" : "bfloat16" }
}

/// A model as a parml.Model message (parml_model_save, _serialize).
public enum ModelFile {
    /// Builds the message for `model` and hands it to `body` (valid only there).
    private static func withMessage<R>(
        _ model: Model, weights: StoredWeights, _ body: (UnsafePointer<ProtobufCMessage>) throws -> R
    ) throws -> R {
        let arena = PackArena()
        let m = try arena.allocate(Parml__Model.self, count: 1)
        try ModelCodec.fill(m, from: model, weights: weights, arena: arena)
        return try withExtendedLifetime((model, arena)) {
            try body(UnsafeRawPointer(m).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    /// The model file's bytes; with a key, authenticated (FileAuthentication).
    public static func encode(_ model: Model, weights: StoredWeights = .float32, key: UnsafeRawBufferPointer? = nil) throws -> EncodedBytes {
        try withMessage(model, weights: weights) { m in try key.map { try FileFormat.packSealed(m, key: $0) } ?? FileFormat.packSealed(m) }
    }

    /// Writes the model file to `path` atomically, packing straight into it
    /// (with a key: packed in memory, then written).
    public static func write(
        _ model: Model, to path: String, weights: StoredWeights = .float32, key: UnsafeRawBufferPointer? = nil
    ) throws {
        if let key {
            let bytes = try encode(model, weights: weights, key: key)
            try FileIO.writeAtomically(bytes.bytes, to: path)
            return
        }
        try withMessage(model, weights: weights) { m in
            try FileIO.writeAtomically(to: path) { fd, tmp in try FileFormat.packSealed(m, to: fd, path: tmp) }
        }
    }

    /// A model from a model file's bytes, or from a checkpoint's (its model:
    /// a host resuming elsewhere needs no code that rebuilds the layers).
    /// `key`: the key the file must be authenticated with; nil refuses an
    /// authenticated file.
    public static func decode(_ bytes: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer? = nil) throws -> Model {
        try decode(bytes, knownCRC: nil, key: key)
    }

    /// The same from a file read by FileIO.readSealed (whose CRC is known).
    public static func decode(_ file: EncodedBytes, key: UnsafeRawBufferPointer? = nil) throws -> Model {
        try decode(file.bytes, knownCRC: file.crc, key: key)
    }

    private static func decode(
        _ bytes: UnsafeRawBufferPointer, knownCRC: (covered: Int, value: UInt32)?, key: UnsafeRawBufferPointer?
    ) throws -> Model {
        if FileFormat.startsWithMagic(bytes, FileFormat.checkpointMagic) {
            let u = try FileFormat.checkpoint(bytes, known: knownCRC, what: "checkpoint file", key: key)
            return try withExtendedLifetime(u) {
                guard let m = u.message.pointee.model else { throw ParmlError.format("the checkpoint has no model") }
                return try ModelCodec.model(from: m.pointee, allowBFloat16: false)
            }
        }
        let u = try FileFormat.model(bytes, known: knownCRC, key: key)
        return try withExtendedLifetime(u) { try ModelCodec.model(from: u.message.pointee, allowBFloat16: true) }
    }
}
