import _CParmlKernels

// The element-wise kernels of Kernels.swift as RangeTasks, for
// WorkerPool.forRanges: each runs its C kernel on one range of the elements
// (or rows, or columns), which changes no bit of any element.

/// y = f(x).
struct UnaryTask: RangeTask {
    typealias Kernel = @convention(c) (UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, Int) -> Void
    let f: Kernel
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    @inline(__always) func run(_ r: Range<Int>, part: Int) { f(x + r.lowerBound, y + r.lowerBound, r.count) }
}

/// y = f(a, b).
struct BinaryTask: RangeTask {
    typealias Kernel = @convention(c) (UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, Int) -> Void
    let f: Kernel
    let a, b: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    @inline(__always) func run(_ r: Range<Int>, part: Int) { f(a + r.lowerBound, b + r.lowerBound, y + r.lowerBound, r.count) }
}

/// (y, d) = f(x): GELU's training forward.
struct UnaryPairTask: RangeTask {
    typealias Kernel = @convention(c) (UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?, Int) -> Void
    let f: Kernel
    let x: UnsafePointer<Float>
    let y, d: UnsafeMutablePointer<Float>
    @inline(__always) func run(_ r: Range<Int>, part: Int) { f(x + r.lowerBound, y + r.lowerBound, d + r.lowerBound, r.count) }
}

/// Rows of y (rows, cols) = b (cols).
struct BroadcastRowsTask: RangeTask {
    let b: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    let cols: Int
    @inline(__always) func run(_ r: Range<Int>, part: Int) { pml_broadcast_rows(b, y + r.lowerBound * cols, r.count, cols) }
}

/// db = beta·db + Σ_rows dy on a block of columns.
struct SumRowsTask: RangeTask {
    let dy: UnsafePointer<Float>
    let db: UnsafeMutablePointer<Float>
    let rows, cols: Int
    let beta: Float
    @inline(__always) func run(_ r: Range<Int>, part: Int) { pml_sum_rows_columns(dy, db, rows, cols, beta, r.lowerBound, r.upperBound) }
}

/// y += b.
struct AddInPlaceTask: RangeTask {
    let y: UnsafeMutablePointer<Float>
    let b: UnsafePointer<Float>
    @inline(__always) func run(_ r: Range<Int>, part: Int) { pml_add_inplace(y + r.lowerBound, b + r.lowerBound, r.count) }
}

/// found[part] = 0 when x's range is finite, NaN otherwise (Kernels.nonFiniteProbe).
struct NonFiniteProbeTask: RangeTask {
    let x: UnsafePointer<Float>
    let found: UnsafeMutablePointer<Float>
    @inline(__always) func run(_ r: Range<Int>, part: Int) { found[part] = pml_nonfinite_probe(x + r.lowerBound, r.count) }
}

/// x *= s.
struct ScaleTask: RangeTask {
    let x: UnsafeMutablePointer<Float>
    let s: Float
    @inline(__always) func run(_ r: Range<Int>, part: Int) { pml_scale(x + r.lowerBound, s, r.count) }
}

/// LayerNorm forward on a block of rows.
struct LayerNormForwardTask: RangeTask {
    let x, gamma, beta: UnsafePointer<Float>
    let eps: Float
    let y, mean, rstd: UnsafeMutablePointer<Float>
    let cols: Int
    @inline(__always) func run(_ r: Range<Int>, part: Int) {
        let o = r.lowerBound * cols
        pml_layer_norm_forward(x + o, gamma, beta, eps, y + o, mean + r.lowerBound, rstd + r.lowerBound, r.count, cols)
    }
}

/// LayerNorm backward's dx on a block of rows.
struct LayerNormInputGradientTask: RangeTask {
    let dy, x, mean, rstd, gamma: UnsafePointer<Float>
    let dx: UnsafeMutablePointer<Float>
    let cols: Int
    @inline(__always) func run(_ r: Range<Int>, part: Int) {
        let o = r.lowerBound * cols
        pml_layer_norm_backward_input(dy + o, x + o, mean + r.lowerBound, rstd + r.lowerBound, gamma, dx + o, r.count, cols)
    }
}

/// LayerNorm backward's dγ, dβ on a block of columns, over every row in order.
struct LayerNormParameterGradientTask: RangeTask {
    let dy, x, mean, rstd: UnsafePointer<Float>
    let dgamma, dbeta: UnsafeMutablePointer<Float>
    let rows, cols: Int
    @inline(__always) func run(_ r: Range<Int>, part: Int) {
        pml_layer_norm_backward_params(dy, x, mean, rstd, dgamma, dbeta, rows, cols, r.lowerBound, r.upperBound)
    }
}
