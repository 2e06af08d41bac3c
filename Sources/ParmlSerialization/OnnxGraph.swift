import CParmlProto
import ParmlTensor

/// Builds an ONNX GraphProto (proto/onnx_subset.proto) in a PackArena:
/// nodes, initializers and fresh value names. Initializer data points at
/// memory the caller keeps alive (model parameters) or arena copies.
final class OnnxGraph {
    typealias Node = UnsafeMutablePointer<Parml__Onnx__NodeProto>
    typealias TensorMessage = UnsafeMutablePointer<Parml__Onnx__TensorProto>

    enum Attribute {
        case int(String, Int64)
        case float(String, Float)
        case ints(String, [Int64])
    }

    let arena: PackArena
    private(set) var nodes: [Node] = []
    private(set) var initializers: [TensorMessage] = []
    private var names = 0

    init(arena: PackArena) { self.arena = arena }

    /// A value name not used before ("t7").
    func fresh() -> String {
        names += 1
        return "t\(names)"
    }

    /// Appends a node of the default domain; returns its (single) output.
    @discardableResult
    func node(_ op: String, _ inputs: [String], output: String? = nil, _ attributes: [Attribute] = []) throws -> String {
        let out = output ?? fresh()
        let n = try arena.allocate(Parml__Onnx__NodeProto.self, count: 1)
        parml__onnx__node_proto__init(n)
        n.pointee.op_type = try arena.string(op)
        n.pointee.name = try arena.string("\(op)_\(nodes.count)")
        n.pointee.n_input = inputs.count
        n.pointee.input = try strings(inputs)
        n.pointee.n_output = 1
        n.pointee.output = try strings([out])
        if !attributes.isEmpty {
            let list = try arena.allocate(UnsafeMutablePointer<Parml__Onnx__AttributeProto>?.self, count: attributes.count)
            for (k, a) in attributes.enumerated() {
                let m = try arena.allocate(Parml__Onnx__AttributeProto.self, count: 1)
                parml__onnx__attribute_proto__init(m)
                switch a {
                case .int(let name, let v):
                    m.pointee.name = try arena.string(name)
                    m.pointee.type = PARML__ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
                    m.pointee.i = v
                case .float(let name, let v):
                    m.pointee.name = try arena.string(name)
                    m.pointee.type = PARML__ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
                    m.pointee.f = v
                case .ints(let name, let v):
                    m.pointee.name = try arena.string(name)
                    m.pointee.type = PARML__ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
                    let p = try arena.allocate(Int64.self, count: max(v.count, 1))
                    for (i, x) in v.enumerated() { p[i] = x }
                    m.pointee.n_ints = v.count
                    m.pointee.ints = p
                }
                list[k] = m
            }
            n.pointee.n_attribute = attributes.count
            n.pointee.attribute = list
        }
        nodes.append(n)
        return out
    }

    /// A float initializer of `dims` whose data is `count` floats at `data`.
    @discardableResult
    func initializer(_ name: String, dims: [Int], data: UnsafePointer<Float>, count: Int) throws -> String {
        try initializer(
            name, dims: dims, dataType: Int32(PARML__ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue), bytes: UnsafeRawPointer(data),
            count: count * MemoryLayout<Float>.stride)
    }

    /// ONNX's TensorProto.DataType INT64 (onnx_subset.proto declares FLOAT only;
    /// data_type is a plain int32 field).
    static let int64DataType: Int32 = 7

    /// An int64 initializer (a shape, an index, axes), copied into the arena.
    @discardableResult
    func initializer(_ name: String, dims: [Int], int64s values: [Int64]) throws -> String {
        let p = try arena.allocate(Int64.self, count: max(values.count, 1))
        for (i, v) in values.enumerated() { p[i] = v }
        return try initializer(
            name, dims: dims, dataType: OnnxGraph.int64DataType, bytes: UnsafeRawPointer(p), count: values.count * MemoryLayout<Int64>.stride)
    }

    /// A float initializer copied into the arena.
    @discardableResult
    func initializer(_ name: String, dims: [Int], floats values: [Float]) throws -> String {
        let p = try arena.allocate(Float.self, count: max(values.count, 1))
        for (i, v) in values.enumerated() { p[i] = v }
        return try initializer(name, dims: dims, data: p, count: values.count)
    }

    /// `count` bytes at `bytes` as raw_data: values in memory are the
    /// little-endian layout ONNX wants on x86-64 and arm64.
    private func initializer(_ name: String, dims: [Int], dataType: Int32, bytes: UnsafeRawPointer, count: Int) throws -> String {
        let t = try arena.allocate(Parml__Onnx__TensorProto.self, count: 1)
        parml__onnx__tensor_proto__init(t)
        t.pointee.name = try arena.string(name)
        t.pointee.data_type = dataType
        let d = try arena.allocate(Int64.self, count: dims.count)
        for (i, v) in dims.enumerated() { d[i] = Int64(v) }
        t.pointee.n_dims = dims.count
        t.pointee.dims = d
        t.pointee.raw_data = ProtobufCBinaryData(
            len: count, data: UnsafeMutableRawPointer(mutating: bytes).assumingMemoryBound(to: UInt8.self))
        initializers.append(t)
        return name
    }

    /// A scalar float constant as an initializer (shape []).
    func scalar(_ name: String, _ value: Float) throws -> String {
        let p = try arena.allocate(Float.self, count: 1)
        p.pointee = value
        return try initializer(name, dims: [], data: p, count: 1)
    }

    /// A float tensor ValueInfoProto; the first dimension is the symbolic batch "N".
    func valueInfo(_ name: String, shape: Shape) throws -> UnsafeMutablePointer<Parml__Onnx__ValueInfoProto> {
        let dims = try arena.allocate(UnsafeMutablePointer<Parml__Onnx__TensorShapeProto__Dimension>?.self, count: shape.rank)
        for i in 0..<shape.rank {
            let d = try arena.allocate(Parml__Onnx__TensorShapeProto__Dimension.self, count: 1)
            parml__onnx__tensor_shape_proto__dimension__init(d)
            if i == 0 { d.pointee.dim_param = try arena.string("N") } else { d.pointee.dim_value = Int64(shape[i]) }
            dims[i] = d
        }
        let s = try arena.allocate(Parml__Onnx__TensorShapeProto.self, count: 1)
        parml__onnx__tensor_shape_proto__init(s)
        s.pointee.n_dim = shape.rank
        s.pointee.dim = dims
        let tt = try arena.allocate(Parml__Onnx__TypeProto__Tensor.self, count: 1)
        parml__onnx__type_proto__tensor__init(tt)
        tt.pointee.elem_type = Int32(PARML__ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue)
        tt.pointee.shape = s
        let type = try arena.allocate(Parml__Onnx__TypeProto.self, count: 1)
        parml__onnx__type_proto__init(type)
        type.pointee.tensor_type = tt
        let v = try arena.allocate(Parml__Onnx__ValueInfoProto.self, count: 1)
        parml__onnx__value_info_proto__init(v)
        v.pointee.name = try arena.string(name)
        v.pointee.type = type
        return v
    }

    /// Pointer array of arena copies of `list`.
    private func strings(_ list: [String]) throws -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let p = try arena.allocate(UnsafeMutablePointer<CChar>?.self, count: list.count)
        for (i, s) in list.enumerated() { p[i] = try arena.string(s) }
        return p
    }

    /// `items` as a protobuf-c repeated message field (pointer array).
    func list<T>(_ items: [UnsafeMutablePointer<T>]) throws -> UnsafeMutablePointer<UnsafeMutablePointer<T>?> {
        let p = try arena.allocate(UnsafeMutablePointer<T>?.self, count: items.count)
        for (i, m) in items.enumerated() { p[i] = m }
        return p
    }
}
