import CParmlProto
import ParmlModel
import ParmlTensor

/// Format 1 (files written by parml 0.1 and 0.2): a layer's kind was an enum
/// and its attributes were fixed fields. This maps such a record to the kind
/// name and attributes format 2 writes, so one path builds the layer. The
/// table is frozen: kinds added later exist only in format 2.
enum LegacyLayerRecord {
    static func kind(of rec: Parml__Layer, index i: Int) throws -> (String, [Attributes.Entry]) {
        func entries(_ a: Attributes) -> [Attributes.Entry] { a.entries }
        switch rec.kind {
        case PARML__LAYER__KIND__LINEAR:
            return (
                "linear",
                entries(["in_features": .int(rec.in_features), "out_features": .int(rec.out_features), "bias": .bool(rec.bias != 0)])
            )
        case PARML__LAYER__KIND__RELU: return ("relu", [])
        case PARML__LAYER__KIND__GELU: return ("gelu", [])
        case PARML__LAYER__KIND__TANH: return ("tanh", [])
        case PARML__LAYER__KIND__SIGMOID: return ("sigmoid", [])
        case PARML__LAYER__KIND__LAYER_NORM:
            return ("layer_norm", entries(["features": .int(rec.features), "eps": .float(rec.eps)]))
        case PARML__LAYER__KIND__DROPOUT: return ("dropout", entries(["p": .float(rec.p)]))
        case PARML__LAYER__KIND__FLATTEN: return ("flatten", [])
        case PARML__LAYER__KIND__RESIDUAL: return ("residual", [])
        default:
            throw ParmlError.format("layer \(i) has kind \(rec.kind.rawValue), unknown to format 1")
        }
    }
}
