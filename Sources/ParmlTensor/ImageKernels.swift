import _CParmlKernels

/// A window sliding over image planes (NCHW): its size, step, the spacing
/// of its taps (dilation) and the padding on each side, height then width,
/// as PyTorch's Conv2d and pooling take them.
public struct Window2d: Sendable, Equatable {
    public let kernelH: Int, kernelW: Int
    public let strideH: Int, strideW: Int
    public let padH: Int, padW: Int
    public let dilationH: Int, dilationW: Int

    public init(kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int) = (1, 1)) {
        (kernelH, kernelW) = kernel
        (strideH, strideW) = stride
        (padH, padW) = padding
        (dilationH, dilationW) = dilation
    }

    /// Output height and width over an input of `height`×`width`
    /// (⌊(in + 2·pad − dilation·(kernel − 1) − 1) / stride⌋ + 1, as PyTorch);
    /// nil when the dilated kernel does not fit in the padded input.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int)? {
        let spanH = dilationH * (kernelH - 1) + 1, spanW = dilationW * (kernelW - 1) + 1
        let h = height + 2 * padH - spanH, w = width + 2 * padW - spanW
        guard h >= 0, w >= 0 else { return nil }
        return (h / strideH + 1, w / strideW + 1)
    }

    /// "3x3 stride 2x2 padding 1x1" for messages and plans.
    public var text: String { "\(kernelH)x\(kernelW) stride \(strideH)x\(strideW) padding \(padH)x\(padW)" }

    @inline(__always)
    func c(height: Int, width: Int, outHeight: Int, outWidth: Int) -> pml_window {
        pml_window(
            height: height, width: width, kernel_h: kernelH, kernel_w: kernelW, stride_h: strideH, stride_w: strideW,
            pad_h: padH, pad_w: padW, dilation_h: dilationH, dilation_w: dilationW, out_h: outHeight, out_w: outWidth)
    }
}

/// The input and output plane sizes a window works between.
public struct PlaneSizes: Sendable, Equatable {
    public let height: Int, width: Int, outHeight: Int, outWidth: Int
    public init(height: Int, width: Int, outHeight: Int, outWidth: Int) {
        self.height = height
        self.width = width
        self.outHeight = outHeight
        self.outWidth = outWidth
    }
    public var input: Int { height * width }
    public var output: Int { outHeight * outWidth }
}

// The loops around convolution's sgemm and the pooling windows, in C
// (_CParmlKernels/image.c, pml_image.h). Naive.swift holds their references.
extension Kernels {
    /// col (channels·kh·kw, outH·outW) = the window's taps of x (channels planes), 0 in the padding.
    public static func im2col(
        _ x: UnsafePointer<Float>, channels: Int, _ w: Window2d, _ s: PlaneSizes, into col: UnsafeMutablePointer<Float>
    ) {
        var g = w.c(height: s.height, width: s.width, outHeight: s.outHeight, outWidth: s.outWidth)
        pml_im2col(x, channels, &g, col)
    }

    /// dx (channels planes) += col's taps put back where im2col took them.
    public static func col2im(
        _ col: UnsafePointer<Float>, channels: Int, _ w: Window2d, _ s: PlaneSizes, into dx: UnsafeMutablePointer<Float>
    ) {
        var g = w.c(height: s.height, width: s.width, outHeight: s.outHeight, outWidth: s.outWidth)
        pml_col2im(col, channels, &g, dx)
    }

    /// y (planes, size) = b[p] on plane p.
    public static func fillPlanes(_ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        pml_fill_planes(b, y, planes, size)
    }

    /// y (planes, size) += b[p] on plane p.
    public static func addPlanes(_ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        pml_add_planes(b, y, planes, size)
    }

    /// db[p] += Σ plane p of dy (planes, size).
    public static func addPlaneSums(_ dy: UnsafePointer<Float>, into db: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        pml_add_plane_sums(dy, db, planes, size)
    }

    /// y[p] = the mean of plane p of x (planes, size).
    public static func planeMeans(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        pml_plane_means(x, y, planes, size)
    }

    /// dx (planes, size) = dy[p] / size on plane p.
    public static func spreadPlaneMeans(_ dy: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        pml_spread_plane_means(dy, dx, planes, size)
    }

    /// y = each window's largest cell (first in scan order on ties, NaN if
    /// any), arg = its index in the plane; the window's dilation is ignored.
    public static func maxPoolForward(
        _ x: UnsafePointer<Float>, planes: Int, _ w: Window2d, _ s: PlaneSizes, _ y: UnsafeMutablePointer<Float>,
        argmax: UnsafeMutablePointer<Int32>
    ) {
        // Planes on their own: blocks of planes over the rank's threads, any cut the same bits.
        let g = w.c(height: s.height, width: s.width, outHeight: s.outHeight, outWidth: s.outWidth)
        WorkerPool.forRanges(
            count: planes, grain: max(1, Kernels.Grain.costly / max(s.height * s.width, 1)), alignment: 1,
            MaxPoolForwardTask(x: x, window: g, y: y, argmax: argmax, inSize: s.height * s.width, outSize: s.outHeight * s.outWidth))
    }

    /// dx (zeroed by the caller) += dy at each output's argmax.
    public static func maxPoolBackward(
        _ dy: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, planes: Int, _ w: Window2d, _ s: PlaneSizes,
        _ dx: UnsafeMutablePointer<Float>
    ) {
        let g = w.c(height: s.height, width: s.width, outHeight: s.outHeight, outWidth: s.outWidth)
        WorkerPool.forRanges(
            count: planes, grain: max(1, Kernels.Grain.cheap / max(s.height * s.width, 1)), alignment: 1,
            MaxPoolBackwardTask(dy: dy, argmax: argmax, window: g, dx: dx, inSize: s.height * s.width, outSize: s.outHeight * s.outWidth))
    }

    /// y = each window's mean, over kh·kw cells (countIncludePad) or over those inside the input.
    public static func avgPoolForward(
        _ x: UnsafePointer<Float>, planes: Int, _ w: Window2d, _ s: PlaneSizes, countIncludePad: Bool,
        _ y: UnsafeMutablePointer<Float>
    ) {
        var g = w.c(height: s.height, width: s.width, outHeight: s.outHeight, outWidth: s.outWidth)
        pml_avg_pool_forward(x, planes, &g, countIncludePad ? 1 : 0, y)
    }

    /// dx (zeroed by the caller) += each output's gradient spread over its window.
    public static func avgPoolBackward(
        _ dy: UnsafePointer<Float>, planes: Int, _ w: Window2d, _ s: PlaneSizes, countIncludePad: Bool,
        _ dx: UnsafeMutablePointer<Float>
    ) {
        var g = w.c(height: s.height, width: s.width, outHeight: s.outHeight, outWidth: s.outWidth)
        pml_avg_pool_backward(dy, planes, &g, countIncludePad ? 1 : 0, dx)
    }
}

/// Max pooling forward on a block of planes.
private struct MaxPoolForwardTask: RangeTask {
    let x: UnsafePointer<Float>
    let window: pml_window
    let y: UnsafeMutablePointer<Float>
    let argmax: UnsafeMutablePointer<Int32>
    let inSize, outSize: Int
    @inline(__always) func run(_ r: Range<Int>, part: Int) {
        var g = window
        let o = r.lowerBound * outSize
        pml_max_pool_forward(x + r.lowerBound * inSize, r.count, &g, y + o, argmax + o)
    }
}

/// Max pooling backward on a block of planes (each plane's dx its own).
private struct MaxPoolBackwardTask: RangeTask {
    let dy: UnsafePointer<Float>
    let argmax: UnsafePointer<Int32>
    let window: pml_window
    let dx: UnsafeMutablePointer<Float>
    let inSize, outSize: Int
    @inline(__always) func run(_ r: Range<Int>, part: Int) {
        var g = window
        let o = r.lowerBound * outSize
        pml_max_pool_backward(dy + o, argmax + o, r.count, &g, dx + r.lowerBound * inSize)
    }
}
