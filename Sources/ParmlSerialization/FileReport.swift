import CParmlProto
import ParmlModel
import ParmlTensor

/// What a parml file holds, for people and scripts (the `parml info` and
/// `parml verify` tools): its kind, format version, checksum, layers and
/// parameter tensors, and for a checkpoint its step and epoch counts,
/// optimizer and the layout it was trained with. Reading a file for a
/// report runs every check loading it would (seal, schema, shapes), so a
/// report that succeeds is a file that loads.
public struct FileReport {
    public enum Kind: String { case model, checkpoint, tensor }

    public var kind: Kind
    public var bytes: Int
    public var formatVersion: UInt32 = 0
    /// The CRC-32 the file carries verified (models and checkpoints; tensor
    /// messages carry none).
    public var checksumVerified = false
    public var model: Model?
    /// How a model file stores its parameters (checkpoints: always float32).
    public var storedWeights: StoredWeights = .float32
    public var tensorShape: Shape?
    /// A tensor message's element type.
    public var tensorType: DType = .float32
    public var tensorName = ""
    public var step = 0
    public var epoch = 0
    public var seed: UInt64 = 0
    public var optimizer: [(String, String)] = []
    public var optimizerState: [String] = []
    public var layout: [(String, String)] = []

    /// Reads and checks `path`: a model file, a checkpoint, or a tensor message.
    public static func read(_ path: String) throws -> FileReport {
        // Read as sealed files are, CRC computed on the way (a tensor
        // message has no seal; its CRC is left unused).
        let file = try FileIO.readSealed(path)
        let bytes = file.bytes
        if FileFormat.startsWithMagic(bytes, FileFormat.checkpointMagic) {
            let u = try FileFormat.checkpoint(bytes, known: file.crc, what: "checkpoint file", key: nil)
            let c = u.message.pointee
            guard let m = c.model else { throw ParmlError.format("the checkpoint has no model") }
            var r = FileReport(kind: .checkpoint, bytes: file.count)
            r.formatVersion = c.format_version
            r.checksumVerified = true
            r.model = try ModelCodec.model(from: m.pointee, allowBFloat16: false)
            r.step = Int(c.step)
            r.epoch = Int(c.epoch)
            r.seed = c.seed
            if let o = c.optimizer?.pointee {
                let kind = OptimizerKind(rawValue: Int32(bitPattern: o.kind.rawValue)).map { "\($0)" } ?? "unknown (\(o.kind.rawValue))"
                r.optimizer = [
                    ("kind", kind), ("learning_rate", "\(o.learning_rate)"), ("momentum", "\(o.momentum)"),
                    ("nesterov", o.nesterov != 0 ? "true" : "false"), ("weight_decay", "\(o.weight_decay)"),
                    ("beta1", "\(o.beta1)"), ("beta2", "\(o.beta2)"), ("epsilon", "\(o.epsilon)"),
                    ("clip_grad_norm", "\(o.clip_grad_norm)"),
                    ("decay_by_kind", o.decay_by_kind != 0 ? "true" : "false"),
                ]
                if o.learning_rate_scale != 0 { r.optimizer.append(("learning_rate_scale", "\(o.learning_rate_scale)")) }
                for k in 0..<o.n_state {
                    let t = try TensorCodec.element(o.state, k, what: "optimizer state \(k)")
                    r.optimizerState.append(t.name.map { String(cString: $0) } ?? "")
                }
            }
            if let l = c.layout?.pointee {
                r.layout = [
                    ("dp", "\(l.dp)"), ("tp", "\(l.tp)"), ("pp", "\(l.pp)"), ("zero_stage", "\(l.zero_stage)"),
                    ("micro_batches", "\(l.micro_batches)"), ("backend", l.backend.rawValue == 2 ? "mpi" : "threads"),
                    ("deterministic", l.deterministic != 0 ? "true" : "false"), ("grad_chunk", "\(l.grad_chunk)"),
                ]
            }
            return r
        }
        if FileFormat.startsWithMagic(bytes, FileFormat.modelMagic) {
            let u = try FileFormat.model(bytes, known: file.crc, key: nil)
            var r = FileReport(kind: .model, bytes: file.count)
            r.formatVersion = u.message.pointee.format_version
            r.checksumVerified = true
            r.model = try ModelCodec.model(from: u.message.pointee, allowBFloat16: true)
            r.storedWeights = ModelCodec.storedWeights(of: u.message.pointee)
            return r
        }
        let u = try Unpacked<Parml__Tensor>(bytes, pml_tensor_descriptor(), what: "file (not a model, checkpoint or tensor message)")
        var r = FileReport(kind: .tensor, bytes: file.count)
        r.tensorShape = try TensorCodec.shape(of: u.message.pointee, what: "tensor", allowing: DType.allCases)
        r.tensorType = try TensorCodec.dtype(of: u.message.pointee, what: "tensor", allowing: DType.allCases)
        r.tensorName = u.message.pointee.name.map { String(cString: $0) } ?? ""
        return r
    }

    /// One line per layer: nesting depth, kind and attributes, parameters.
    private var layerLines: [(depth: Int, text: String, parameters: Int)] {
        guard let model else { return [] }
        return ModelCodec.layerDescriptions(of: model).map {
            ($0.depth, $0.text, $0.layer.parameterSpecs.reduce(0) { $0 + $1.shape.count })
        }
    }

    /// The report for people.
    public var text: String {
        var out: [String] = []
        switch kind {
        case .tensor:
            out.append("tensor message, \(bytes) bytes (no checksum: tensor messages carry none)")
            out.append("  name: \(tensorName.isEmpty ? "(none)" : tensorName)")
            out.append("  dtype: \(tensorType.name), shape: \(tensorShape.map { "\($0.dims)" } ?? "?")")
            return out.joined(separator: "\n")
        case .model, .checkpoint:
            out.append("\(kind.rawValue) file, format version \(formatVersion), \(bytes) bytes, crc32 \(checksumVerified ? "verified" : "not checked")")
        }
        if kind == .checkpoint {
            out.append("step \(step), epoch \(epoch), seed \(seed)")
            out.append("optimizer: " + optimizer.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
            out.append("optimizer state: " + (optimizerState.isEmpty ? "(none)" : optimizerState.joined(separator: ", ")))
            out.append("trained with: " + layout.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
        }
        if let model {
            out.append("layers:")
            for l in layerLines {
                out.append(String(repeating: "  ", count: l.depth + 1) + l.text + (l.parameters > 0 ? "  (\(l.parameters) parameters)" : ""))
            }
            out.append("parameter tensors:")
            for info in model.namedParameters { out.append("  \(info.name) \(info.shape.dims)") }
            out.append("total parameters: \(model.namedParameterCount), stored as \(storedWeights.name)")
        }
        return out.joined(separator: "\n")
    }

    /// The report as one JSON object (keys in a fixed order).
    public var json: String {
        var fields: [String] = ["\"kind\": \(quoted(kind.rawValue))", "\"bytes\": \(bytes)"]
        if kind == .tensor {
            fields.append("\"name\": \(quoted(tensorName))")
            fields.append("\"dtype\": \"\(tensorType.name)\"")
            fields.append("\"shape\": [\((tensorShape?.dims ?? []).map(String.init).joined(separator: ", "))]")
            return "{" + fields.joined(separator: ", ") + "}"
        }
        fields.append("\"format_version\": \(formatVersion)")
        fields.append("\"checksum\": \(quoted(checksumVerified ? "verified" : "not checked"))")
        if kind == .checkpoint {
            fields.append("\"step\": \(step)")
            fields.append("\"epoch\": \(epoch)")
            fields.append("\"seed\": \(seed)")
            fields.append("\"optimizer\": {" + optimizer.map { "\(quoted($0.0)): \(jsonValue($0.1))" }.joined(separator: ", ") + "}")
            fields.append("\"optimizer_state\": [" + optimizerState.map(quoted).joined(separator: ", ") + "]")
            fields.append("\"layout\": {" + layout.map { "\(quoted($0.0)): \(jsonValue($0.1))" }.joined(separator: ", ") + "}")
        }
        if let model {
            let layers = layerLines.map {
                "{\"depth\": \($0.depth), \"layer\": \(quoted($0.text)), \"parameters\": \($0.parameters)}"
            }
            fields.append("\"layers\": [" + layers.joined(separator: ", ") + "]")
            let tensors = model.namedParameters.map {
                "{\"name\": \(quoted($0.name)), \"shape\": [\($0.shape.dims.map(String.init).joined(separator: ", "))]}"
            }
            fields.append("\"parameter_tensors\": [" + tensors.joined(separator: ", ") + "]")
            fields.append("\"parameters\": \(model.namedParameterCount)")
            fields.append("\"stored_weights\": \"\(storedWeights.name)\"")
        }
        return "{" + fields.joined(separator: ", ") + "}"
    }

    /// Numbers and booleans as they are, anything else as a string.
    private func jsonValue(_ s: String) -> String {
        if s == "true" || s == "false" { return s }
        if let d = Double(s), d.isFinite { return s }
        return quoted(s)
    }

    private func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
