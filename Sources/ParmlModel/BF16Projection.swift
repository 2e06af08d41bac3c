import ParmlTensor

/// bf16 copies of a rank's parameter runs, kept equal to its trained
/// parameters rounded to bf16 by the rank itself: rounded whole when they
/// are not current, then by the optimizer, range by range, right after it
/// updates them (the values are still in cache, where a separate pass would
/// read every weight again each step). Projections take their weight from
/// here (`PassContext.bf16Weights`) instead of rounding it once per step
/// themselves: the same bits. Only a rank that updates every parameter it
/// computes with keeps them (no ZeRO shard, no local SGD average). The
/// trainer marks them stale when the parameters are set from outside or
/// another trainer stepped the model. Values written outside the update
/// (batch_norm's running statistics) are not kept; no projection reads them.
public final class BF16ParameterCopies: @unchecked Sendable {
    private struct Run {
        let first: Int
        let count: Int
        let copy: UnsafeMutablePointer<UInt16>
    }

    private let arena: UnsafeMutablePointer<Float>
    private let runs: [Run]
    /// Whether every copy holds its parameters' current values rounded.
    public private(set) var isCurrent = false

    /// Copies of the arena's `ranges` (disjoint), not yet current.
    public init(arena: UnsafeMutablePointer<Float>, ranges: [Range<Int>]) {
        self.arena = arena
        runs = ranges.map { Run(first: $0.lowerBound, count: $0.count, copy: .allocate(capacity: max($0.count, 1))) }
    }

    deinit { for r in runs { r.copy.deallocate() } }

    /// Rounds every run over the rank's threads unless they are current.
    public func makeCurrent() {
        if isCurrent { return }
        for r in runs { BF16.round(arena + r.first, into: r.copy, count: r.count) }
        isCurrent = true
    }

    /// The parameters may have changed from outside: round again before use.
    public func invalidate() { isCurrent = false }

    /// The copy of arena element `index` onwards, for an optimizer updating
    /// a range that starts there (nil: not copied here).
    public func copy(ofElement index: Int) -> UnsafeMutablePointer<UInt16>? { copy(of: index, count: 1) }

    /// The bf16 copy of the `count` parameters at `x`, when current and
    /// within one run (nil: the caller rounds them itself).
    public func copy(of x: UnsafePointer<Float>, count: Int) -> UnsafePointer<UInt16>? {
        guard isCurrent else { return nil }
        return copy(of: UnsafePointer(arena).distance(to: x), count: count).map { UnsafePointer($0) }
    }

    /// Where arena elements [first, first + count) are copied, if in one run.
    private func copy(of first: Int, count: Int) -> UnsafeMutablePointer<UInt16>? {
        for r in runs where first >= r.first && first + count <= r.first + r.count { return r.copy + (first - r.first) }
        return nil
    }
}

/// One projection's products in bf16 (docs/precision.md): y = x·Wᵀ forward,
/// dW = dyᵀ·x and dx = dy·W backward, as Linear and attention's c_attn and
/// c_proj compute them in float32, on bf16 copies of x, W and dy with
/// float32 accumulation. x's copy serves forward and dW; W's serves
/// forward and dx, and is the rank's (`BF16ParameterCopies`) where it keeps
/// one, else rounded here once per step (keyed on PassContext.stepSerial);
/// dy's serves dW and dx. Biases and their gradients stay float32 (the
/// caller's). Used by one thread at a time, like its layer.
final class BF16Projection {
    private let input = BF16Array()
    private let weight = BF16Array()
    private let gradOutput = BF16Array()
    private let products = BF16Products()
    /// The forward pass's thread count and bf16 weight (the rank's copy or
    /// `weight`'s), for its backward.
    private var threads = 0
    private var weightCopy: UnsafePointer<UInt16>?
    private var weightCount = 0

    /// y (rows × outF) = β·y + x·Wᵀ, with x (rows × inF) and W (outF × inF);
    /// with `bias` (outF floats, β = 0), y = x·Wᵀ + b, the bias added by
    /// the product's kernel.
    func forward(
        _ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, rows: Int, inF: Int, outF: Int,
        beta: Float, into y: UnsafeMutablePointer<Float>, _ ctx: PassContext, bias: UnsafePointer<Float>? = nil
    ) throws {
        input.fill(from: x, count: rows * inF)
        let w16: UnsafePointer<UInt16>
        if let copy = ctx.bf16Weights?.copy(of: w, count: outF * inF) {
            w16 = copy
        } else {
            weight.fill(from: w, count: outF * inF, serial: ctx.stepSerial)
            w16 = UnsafePointer(weight.data)
        }
        try products.gemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, input.data, lda: inF, w16, ldb: inF,
            beta: beta, y, ldc: outF, threads: ctx.threads, bias: bias)
        threads = ctx.threads
        weightCopy = w16
        weightCount = outF * inF
    }

    /// dW = β·dW + dyᵀ·x and, unless dx is nil, dx = dy·W, after a forward
    /// of this projection on the same x and W.
    func backward(
        _ dy: UnsafePointer<Float>, rows: Int, inF: Int, outF: Int, beta: Float,
        weightGradient dW: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?
    ) throws {
        guard input.count == rows * inF, weightCount == outF * inF, let w16 = weightCopy else {
            throw ParmlError.state("bf16 backward without its forward")
        }
        gradOutput.fill(from: dy, count: rows * outF)
        try products.gemm(
            transA: true, transB: false, m: outF, n: inF, k: rows, gradOutput.data, lda: outF, input.data, ldb: inF,
            beta: beta, dW, ldc: inF, threads: threads)
        guard let dx else { return }
        try products.gemm(
            transA: false, transB: false, m: rows, n: inF, k: outF, gradOutput.data, lda: outF, w16, ldb: inF,
            beta: 0, dx, ldc: inF, threads: threads)
    }
}
