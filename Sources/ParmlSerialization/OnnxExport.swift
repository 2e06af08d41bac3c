import CParmlProto
import ParmlModel
import ParmlTensor

/// A model as an ONNX file (opset 17, IR version 8) for inference. Each
/// layer lowers itself (`Layer.lowerToOnnx` in its kind's file); a kind
/// without a lowering makes the export fail with PARML_ERR_UNSUPPORTED.
public enum OnnxExport {
    public static let opset: Int64 = 17
    static let irVersion: Int64 = 8

    /// The ONNX bytes for `model` fed inputs of `inputShape` (its first
    /// dimension becomes the symbolic batch "N").
    public static func encode(_ model: Model, inputShape: Shape, producerVersion: String) throws -> EncodedBytes {
        guard let values = model.parameters, model.isInitialized else {
            throw ParmlError.state("the model is not initialised; initialise it first")
        }
        try model.requireWholeParameters("ONNX export")
        let outputShape = try model.outputShape(for: inputShape)
        let arena = PackArena()
        let g = OnnxGraph(arena: arena)
        let emitter = Emitter(graph: g, values: values, infos: model.parameterInfo[...], all: model.parameterInfo)
        let last = try emitter.layers(model.root.layers, input: "input", shape: inputShape)
        guard emitter.infos.isEmpty else { throw ParmlError.internal("\(emitter.infos.count) parameter tensors were not exported") }
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
    /// in the model's arena order: each layer lowers itself, and reads its
    /// own parameters by index from the frame `layers` gives it.
    private final class Emitter: OnnxLowering {
        let graph: OnnxGraph
        let values: Tensor
        var infos: ArraySlice<ParameterInfo>
        /// The parameters of the layers being lowered, innermost last.
        private var frames: [[ParameterInfo]] = []
        /// Transposed weights, kept alive until packing.
        private var transposed: [Tensor] = []
        /// Every parameter, so that a tied copy resolves to its source.
        private let all: [ParameterInfo]
        /// Initializers already in the graph (a tied matrix is used twice).
        private var emitted: Set<String> = []

        init(graph: OnnxGraph, values: Tensor, infos: ArraySlice<ParameterInfo>, all: [ParameterInfo]) {
            self.graph = graph
            self.values = values
            self.infos = infos
            self.all = all
        }

        func layers(_ layers: [Layer], input: String, shape: Shape) throws -> String {
            var x = input
            var s = shape
            for layer in layers {
                let next = try layer.outputShape(for: s)
                let n = layer.parameterSpecs.count
                guard infos.count >= n else { throw ParmlError.internal("the model has fewer parameter tensors than its layers") }
                frames.append(infos.prefix(n).map { info in info.tiedTo.map { all[$0] } ?? info })
                infos = infos.dropFirst(n)
                defer { frames.removeLast() }
                x = try layer.lowerToOnnx(self, input: x, shape: s)
                s = next
            }
            return x
        }

        func node(_ op: String, _ inputs: [String], _ attributes: [OnnxAttribute]) throws -> String {
            try graph.node(
                op, inputs,
                attributes.map {
                    switch $0 {
                    case .int(let name, let v): .int(name, v)
                    case .float(let name, let v): .float(name, v)
                    case .ints(let name, let v): .ints(name, v)
                    }
                })
        }

        func parameter(_ index: Int, transposed wantTransposed: Bool) throws -> String {
            guard let frame = frames.last, frame.indices.contains(index) else {
                throw ParmlError.internal("a layer asked for parameter \(index) it does not have")
            }
            let info = frame[index]
            guard wantTransposed else {
                guard emitted.insert(info.name).inserted else { return info.name }
                return try graph.initializer(info.name, dims: info.shape.dims, data: values.data + info.offset, count: info.count)
            }
            guard info.shape.rank == 2 else { throw ParmlError.internal("only a matrix can be exported transposed") }
            let rows = info.shape[0], cols = info.shape[1]
            let t = try Tensor(shape: Shape(cols, rows))
            let w = values.data + info.offset
            for r in 0..<rows {
                for c in 0..<cols { t.data[c * rows + r] = w[r * cols + c] }
            }
            transposed.append(t)
            return try graph.initializer(info.name + "_transposed", dims: [cols, rows], data: t.data, count: t.count)
        }

        func parameter(_ index: Int, rows: Range<Int>) throws -> String {
            guard let frame = frames.last, frame.indices.contains(index) else {
                throw ParmlError.internal("a layer asked for parameter \(index) it does not have")
            }
            let info = frame[index]
            guard rows.lowerBound >= 0, rows.upperBound <= info.shape[0], !rows.isEmpty else {
                throw ParmlError.internal("rows \(rows) of parameter \(info.name) \(info.shape)")
            }
            let rowSize = info.count / info.shape[0]
            var dims = info.shape.dims
            dims[0] = rows.count
            return try graph.initializer(
                "\(info.name)_rows\(rows.lowerBound)_\(rows.upperBound)", dims: dims, data: values.data + info.offset + rows.lowerBound * rowSize,
                count: rows.count * rowSize)
        }

        func scalar(_ value: Float) throws -> String { try graph.scalar(graph.fresh() + "_const", value) }

        func constant(_ values: [Float], dims: [Int]) throws -> String {
            try checkCount(values.count, dims)
            return try graph.initializer(graph.fresh() + "_const", dims: dims, floats: values)
        }

        func constant(int64 values: [Int64], dims: [Int]) throws -> String {
            try checkCount(values.count, dims)
            return try graph.initializer(graph.fresh() + "_const", dims: dims, int64s: values)
        }

        private func checkCount(_ count: Int, _ dims: [Int]) throws {
            guard dims.allSatisfy({ $0 >= 0 }), dims.reduce(1, *) == count else {
                throw ParmlError.internal("a constant of \(count) values cannot have dims \(dims)")
            }
        }
    }
}
