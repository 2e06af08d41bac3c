import ParmlTensor

/// The window max_pool2d and avg_pool2d take, as PyTorch's MaxPool2d and
/// AvgPool2d: kernel_size, stride (none: the kernel), padding at most half
/// the kernel (so every window holds at least one input cell).
enum PoolWindow {
    static let attributes: [AttributeSpec] = [
        .pair("kernel_size", minimum: 1, doc: "window height and width"),
        .pair("stride", default: [], minimum: 1, allowsNone: true, doc: "step between windows; none (the default) is the kernel size"),
        .pair("padding", default: [0, 0], minimum: 0, doc: "padding on each side, at most half the kernel"),
    ]

    static func make(_ a: Attributes, kind: String) throws -> Window2d {
        let kernel = try a.pair("kernel_size")!
        return try make(kernel: kernel, stride: a.pair("stride") ?? kernel, padding: a.pair("padding")!, kind: kind)
    }

    static func make(kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), kind: String) throws -> Window2d {
        guard kernel.0 >= 1, kernel.1 >= 1, stride.0 >= 1, stride.1 >= 1, padding.0 >= 0, padding.1 >= 0 else {
            throw ParmlError.invalidArgument("\(kind): kernel and stride must be positive, padding not negative")
        }
        guard 2 * padding.0 <= kernel.0, 2 * padding.1 <= kernel.1 else {
            throw ParmlError.invalidArgument(
                "\(kind): padding \(padding.0)x\(padding.1) must be at most half the kernel \(kernel.0)x\(kernel.1) (as PyTorch)")
        }
        return Window2d(kernel: kernel, stride: stride, padding: padding)
    }

    /// Complete values: the stride is written out even when it was the kernel's.
    static func attributes(_ w: Window2d) -> [Attributes.Entry] {
        [
            Attributes.Entry(name: "kernel_size", value: ImageShape.pair((w.kernelH, w.kernelW))),
            Attributes.Entry(name: "stride", value: ImageShape.pair((w.strideH, w.strideW))),
            Attributes.Entry(name: "padding", value: ImageShape.pair((w.padH, w.padW))),
        ]
    }
}
