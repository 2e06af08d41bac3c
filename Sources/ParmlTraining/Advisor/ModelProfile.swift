import ParmlModel
import ParmlParallel
import ParmlTensor

/// A model as one tensor-parallel rank runs it, for the cost model: the
/// top-level layers (tp rank 0's rewrite when tp > 1), their parameters,
/// and their activation buffers as a line in the rows of a piece.
///
/// The buffers are measured, not derived: a copy of the layers runs one
/// training forward and backward at 2 rows and at 4, its products skipped,
/// and `Layer.bufferBytes` (what `Trainer.memory` sums) is read after each. Buffers grow with the
/// rows in every kind parml has (some hold one sample's worth, a constant),
/// so two points give the line.
final class ModelProfile {
    let tp: Int
    /// The copy the probe ran (tp rank 0's layers); its arena gives stage slices.
    let model: Model
    let sampleShape: Shape
    /// Per top-level layer: buffer bytes at 0 rows and per row.
    let bufferBase: [Double]
    let bufferPerRow: [Double]
    /// Per top-level layer: its input shape for one row.
    let inputs: [Shape]
    let output: Shape
    /// f/g collectives per top-level layer: floats per row all-reduced
    /// forward (g) and backward (f), and how many of each.
    let forwardReduce: [(count: Int, floatsPerRow: Int)]
    let backwardReduce: [(count: Int, floatsPerRow: Int)]

    static let probeRows = (2, 4)

    /// `threads`: the probe's pass thread count (attention's scratch is cut
    /// per thread), fixed by the caller rather than read from the process's
    /// pool, which any trainer may have resized meanwhile.
    init(serial: Model, tp: Int, sampleShape: Shape, threads: Int = 1) throws {
        self.tp = tp
        self.sampleShape = sampleShape
        let copy: Model
        if tp > 1 {
            copy = try TensorParallelRewrite(serial: serial, rank: 0, ranks: tp).makeModel(from: serial)
            // One rank alone: the f/g all-reduces are no-ops, the buffers those of a real rank.
            let alone = try ThreadsWorld(size: 1, timeout: 10, name: "advisor-probe")
            TensorParallelSync.attach(alone.communicator(rank: 0), to: copy)
        } else {
            // The probe only reads the parameters: no copy of them (a 2048-wide
            // MLP's 17 MB copy was a tenth of its advice).
            copy = try serial.replicate(sharingParameters: true)
        }
        model = copy
        let layers = copy.root.layers
        var s = sampleShape.withLeadingOne
        var inputs: [Shape] = []
        for l in layers {
            inputs.append(s)
            s = try l.outputShape(for: s)
        }
        self.inputs = inputs
        output = s
        var fwd: [(Int, Int)] = [], bwd: [(Int, Int)] = []
        for (i, l) in layers.enumerated() {
            var f = (0, 0), b = (0, 0)
            ModelProfile.visit(l, input: inputs[i]) { layer, shape in
                if layer is TensorParallelReduce { f = (f.0 + 1, f.1 + shape.count) }
                if layer is TensorParallelEnter { b = (b.0 + 1, b.1 + shape.count) }
            }
            fwd.append(f)
            bwd.append(b)
        }
        forwardReduce = fwd
        backwardReduce = bwd
        let (r1, r2) = ModelProfile.probeRows
        // Shapes run once: no oneDNN plans compiled for them (BLAS.asOneOff);
        // only the buffers' sizes are read, so no product computes
        // (BLAS.skippingProducts, which keeps a cut product's blocks on this thread).
        let (b1, b2) = try BLAS.asOneOff {
            try BLAS.skippingProducts {
                (try ModelProfile.probe(copy, sample: sampleShape, rows: r1, threads: threads),
                 try ModelProfile.probe(copy, sample: sampleShape, rows: r2, threads: threads))
            }
        }
        bufferPerRow = zip(b1, b2).map { max(0, Double($1 - $0) / Double(r2 - r1)) }
        bufferBase = zip(b1, bufferPerRow).map { max(0, Double($0) - $1 * Double(r1)) }
    }

    /// Calls `body` on every layer inside `layer` with its input shape.
    static func visit(_ layer: Layer, input: Shape, _ body: (Layer, Shape) -> Void) {
        body(layer, input)
        var s = input
        for c in layer.children {
            visit(c, input: s, body)
            s = (try? c.outputShape(for: s)) ?? s
        }
    }

    /// One training forward and backward at `rows` (zeros in, ones back);
    /// no layer up to the first that trains parameters computes an input
    /// gradient, as in a step. Returns
    /// each top-level layer's buffer bytes afterwards.
    static func probe(_ model: Model, sample: Shape, rows: Int, threads: Int) throws -> [Int] {
        let x = try Tensor(shape: sample.withLeading(rows, keeping: true))
        x.fill(0)
        var ctx = PassContext(training: true)
        ctx.threads = max(1, threads)
        var h = x
        let layers = model.root.layers
        for l in layers { h = try l.forward(h, ctx) }
        let dy = try Tensor(shape: h.shape)
        dy.fill(1)
        var g: Tensor = dy
        let firstTraining = model.root.firstTrainingLayer
        for (i, l) in layers.enumerated().reversed() {
            guard let next = try l.backward(g, ctx, needInputGradient: i > firstTraining, accumulate: false) else { break }
            g = next
        }
        return layers.map(\.bufferBytes)
    }

    func bufferBytes(layer i: Int, rows: Int) -> Int {
        Int((bufferBase[i] + bufferPerRow[i] * Double(rows)).rounded())
    }

    /// Layer i's input for `rows` rows.
    func input(ofLayer i: Int, rows: Int) -> Shape { inputs[i].withLeading(rows) }
    func output(ofLayer i: Int, rows: Int) -> Shape { (i + 1 < inputs.count ? inputs[i + 1] : output).withLeading(rows) }
}

extension Shape {
    /// (1, dims...): one row of a batch of this sample shape.
    var withLeadingOne: Shape { withLeading(1, keeping: true) }

    /// (n, dims...) from a sample shape (`keeping` its dims after a new leading one).
    func withLeading(_ n: Int, keeping: Bool) -> Shape {
        var s = Shape(n)
        for d in dims { s.append(d) }
        return s
    }
}
