import ParmlTensor

/// What the image kinds (conv2d, the poolings) share: reading an NCHW input
/// shape and the window it is swept by.
enum ImageShape {
    /// The planes of `input` (N, channels, H, W) under `window`, or a
    /// `.shape` error naming `label` (made only then: a step allocates nothing).
    static func planes(_ input: Shape, channels: Int?, window: Window2d, label: @autoclosure () -> String) throws -> PlaneSizes {
        guard input.rank == 4, channels == nil || input[1] == channels else {
            let c = channels.map(String.init) ?? "C"
            throw ParmlError.shape("\(label()) expects input (N, \(c), H, W), got \(input)")
        }
        guard fits(input[2], input[3]) else {
            throw ParmlError.shape("\(label()): a \(input[2])x\(input[3]) plane has more than 2^31-1 cells")
        }
        guard let out = window.outputSize(height: input[2], width: input[3]) else {
            throw ParmlError.shape("\(label()): a \(window.text) window does not fit in a \(input[2])x\(input[3]) input")
        }
        guard fits(out.height, out.width) else {
            throw ParmlError.shape("\(label()): its \(out.height)x\(out.width) output plane has more than 2^31-1 cells")
        }
        return PlaneSizes(height: input[2], width: input[3], outHeight: out.height, outWidth: out.width)
    }

    /// Plane offsets and sgemm sizes are 32-bit (OpenBLAS's ints, pooling's argmax).
    private static func fits(_ h: Int, _ w: Int) -> Bool {
        let (cells, overflow) = h.multipliedReportingOverflow(by: w)
        return !overflow && cells <= Int(Int32.max)
    }

    /// A pooling's output (N, C, Ho, Wo) and planes for `input` (N, C, H, W).
    static func pooled(_ input: Shape, window: Window2d, label: @autoclosure () -> String) throws -> (Shape, PlaneSizes) {
        let p = try planes(input, channels: nil, window: window, label: label())
        return (Shape(input[0], input[1], p.outHeight, p.outWidth), p)
    }

    /// The window as ONNX's Conv and pooling attributes (pads: begins, then ends).
    static func onnxAttributes(_ w: Window2d, dilations: Bool) -> [OnnxAttribute] {
        var a: [OnnxAttribute] = [
            .ints("kernel_shape", [Int64(w.kernelH), Int64(w.kernelW)]),
            .ints("strides", [Int64(w.strideH), Int64(w.strideW)]),
            .ints("pads", [Int64(w.padH), Int64(w.padW), Int64(w.padH), Int64(w.padW)]),
        ]
        if dilations { a.append(.ints("dilations", [Int64(w.dilationH), Int64(w.dilationW)])) }
        return a
    }

    static func pair(_ p: (Int, Int)) -> AttributeValue { .ints([Int64(p.0), Int64(p.1)]) }
}
