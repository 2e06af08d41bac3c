import CParmlProto
import ParmlModel
import ParmlTensor

/// A model as an ONNX file (opset 17, IR version 8) for inference: Linear as
/// Gemm (rank-2 input) or MatMul + Add, ReLU/Tanh/Sigmoid as themselves, GELU
/// as x·0.5·(1 + erf(x/√2)) (exact, as parml computes it; ONNX's own Gelu
/// needs opset 20), LayerNorm as LayerNormalization, Flatten as Flatten,
/// a residual block as Add(x, body(x)); Dropout is the identity at inference.
public enum OnnxExport {
    public static let opset: Int64 = 17
    static let irVersion: Int64 = 8

    /// The ONNX bytes for `model` fed inputs of `inputShape` (its first
    /// dimension becomes the symbolic batch "N").
    public static func encode(_ model: Model, inputShape: Shape, producerVersion: String) throws -> EncodedBytes {
        guard let values = model.parameters, model.isInitialized else {
            throw ParmlError.state("the model is not initialised; initialise it first")
        }
        let outputShape = try model.outputShape(for: inputShape)
        let arena = PackArena()
        let g = OnnxGraph(arena: arena)
        var infos = model.parameterInfo[...]
        var emitter = Emitter(graph: g, values: values, infos: infos)
        let last = try emitter.emit(model.root.layers, input: "input", shape: inputShape)
        infos = emitter.infos
        guard infos.isEmpty else { throw ParmlError.internal("\(infos.count) parameter tensors were not exported") }
        try g.node("Identity", [last], output: "output")

        let graph = try arena.allocate(Parml__Onnx__GraphProto.self, count: 1)
        parml__onnx__graph_proto__init(graph)
        graph.pointee.name = try arena.string("parml")
        graph.pointee.n_node = g.nodes.count
        graph.pointee.node = try g.list(g.nodes)
        graph.pointee.n_initializer = g.initializers.count
        graph.pointee.initializer = try g.list(g.initializers)
        graph.pointee.n_input = 1
        graph.pointee.input = try g.list([g.valueInfo("input", shape: inputShape)])
        graph.pointee.n_output = 1
        graph.pointee.output = try g.list([g.valueInfo("output", shape: outputShape)])

        let opset = try arena.allocate(Parml__Onnx__OperatorSetIdProto.self, count: 1)
        parml__onnx__operator_set_id_proto__init(opset)
        opset.pointee.version = OnnxExport.opset
        let m = try arena.allocate(Parml__Onnx__ModelProto.self, count: 1)
        parml__onnx__model_proto__init(m)
        m.pointee.ir_version = irVersion
        m.pointee.producer_name = try arena.string("parml")
        m.pointee.producer_version = try arena.string(producerVersion)
        m.pointee.doc_string = try arena.string("exported by parml_model_export_onnx; inference only (dropout removed)")
        m.pointee.graph = graph
        m.pointee.n_opset_import = 1
        m.pointee.opset_import = try g.list([opset])
        return try withExtendedLifetime((model, emitter)) {
            try pack(UnsafeRawPointer(m).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    /// Walks the layers depth-first, taking parameter tensors from `infos`
    /// in the model's arena order.
    private struct Emitter {
        let graph: OnnxGraph
        let values: Tensor
        var infos: ArraySlice<ParameterInfo>
        /// Transposed weights for MatMul, kept alive until packing.
        var transposed: [Tensor] = []

        mutating func take() throws -> (name: String, info: ParameterInfo) {
            guard let info = infos.popFirst() else { throw ParmlError.internal("the model has fewer parameter tensors than its layers") }
            return (try graph.initializer(info.name, dims: info.shape.dims, data: values.data + info.offset, count: info.count), info)
        }

        mutating func emit(_ layers: [Layer], input: String, shape: Shape) throws -> String {
            var x = input
            var s = shape
            for layer in layers {
                let next = try layer.outputShape(for: s)
                x = try emit(layer, input: x, shape: s)
                s = next
            }
            return x
        }

        private mutating func emit(_ layer: Layer, input x: String, shape: Shape) throws -> String {
            switch layer {
            case let l as Linear:
                return try linear(l, x, rank: shape.rank)
            case let a as Activation:
                switch a.function {
                case .relu: return try graph.node("Relu", [x])
                case .tanh: return try graph.node("Tanh", [x])
                case .sigmoid: return try graph.node("Sigmoid", [x])
                case .gelu: return try gelu(x)
                }
            case let n as LayerNorm:
                let scale = try take().name, bias = try take().name
                return try graph.node(
                    "LayerNormalization", [x, scale, bias], [.int("axis", -1), .float("epsilon", n.eps)])
            case is Dropout:
                return x
            case is Flatten:
                return try graph.node("Flatten", [x], [.int("axis", 1)])
            case let r as Residual:
                let body = try emit(r.body.layers, input: x, shape: shape)
                return try graph.node("Add", [x, body])
            default:
                throw ParmlError.unsupported("layer kind '\(layer.kind)' has no ONNX export yet")
            }
        }

        /// Gemm on rank-2 inputs (transB = 1: W is (out, in) as parml keeps
        /// it); MatMul with Wᵀ (+ Add) on higher ranks, which Gemm refuses.
        private mutating func linear(_ l: Linear, _ x: String, rank: Int) throws -> String {
            if rank == 2 {
                let w = try take().name
                let inputs = l.hasBias ? [x, w, try take().name] : [x, w]
                return try graph.node("Gemm", inputs, [.int("transB", 1)])
            }
            guard let info = infos.popFirst() else { throw ParmlError.internal("linear without its weight") }
            let wt = try Tensor(shape: Shape(l.inFeatures, l.outFeatures))
            let w = values.data + info.offset
            for o in 0..<l.outFeatures {
                for i in 0..<l.inFeatures { wt.data[i * l.outFeatures + o] = w[o * l.inFeatures + i] }
            }
            transposed.append(wt)
            let name = try graph.initializer(info.name + "_transposed", dims: [l.inFeatures, l.outFeatures], data: wt.data, count: wt.count)
            let y = try graph.node("MatMul", [x, name])
            return l.hasBias ? try graph.node("Add", [y, try take().name]) : y
        }

        /// x · 0.5 · (1 + erf(x · 1/√2)): parml's exact GELU.
        private func gelu(_ x: String) throws -> String {
            let r = try graph.scalar(graph.fresh() + "_rsqrt2", 0.70710678118654752)
            let one = try graph.scalar(graph.fresh() + "_one", 1)
            let half = try graph.scalar(graph.fresh() + "_half", 0.5)
            let e = try graph.node("Erf", [try graph.node("Mul", [x, r])])
            let cdf = try graph.node("Mul", [try graph.node("Add", [e, one]), half])
            return try graph.node("Mul", [x, cdf])
        }
    }
}
