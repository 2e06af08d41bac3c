import ParmlTensor

/// What a layer's ONNX lowering may add to the graph being exported
/// (ParmlSerialization's OnnxExport implements it). Layers name ONNX
/// operators and attributes themselves; this only builds nodes.
public protocol OnnxLowering: AnyObject {
    /// Adds a node of operator `op` and returns the name of its output.
    func node(_ op: String, _ inputs: [String], _ attributes: [OnnxAttribute]) throws -> String
    /// The layer's parameter `index` (in `parameterSpecs` order) as an
    /// initializer; `transposed` stores a 2-D one as its transpose.
    func parameter(_ index: Int, transposed: Bool) throws -> String
    /// Rows `rows` of the layer's parameter `index` (its first dimension) as
    /// an initializer of their own.
    func parameter(_ index: Int, rows: Range<Int>) throws -> String
    /// A float scalar constant.
    func scalar(_ value: Float) throws -> String
    /// A float constant tensor of `dims` (row-major values; `[]` is a scalar).
    func constant(_ values: [Float], dims: [Int]) throws -> String
    /// An int64 constant tensor of `dims`: the shapes, indices and axes that
    /// Reshape, Gather and ReduceSum take as inputs.
    func constant(int64 values: [Int64], dims: [Int]) throws -> String
    /// Lowers `layers` one after another (a container's body) from `input` of `shape`.
    func layers(_ layers: [Layer], input: String, shape: Shape) throws -> String
}

extension OnnxLowering {
    public func node(_ op: String, _ inputs: [String]) throws -> String { try node(op, inputs, []) }
    public func parameter(_ index: Int) throws -> String { try parameter(index, transposed: false) }
}

/// An attribute of an ONNX node.
public enum OnnxAttribute: Sendable {
    case int(String, Int64)
    case float(String, Float)
    /// A list of ints (Conv's kernel_shape, strides, pads, dilations).
    case ints(String, [Int64])
}
