import ParmlTensor

/// Private training. Example i's gradient of group g's weights is
/// dy_i (Og × P) · col_iᵀ (P × K), col_i = im2col of its input. Its
/// squared norm comes from one of two forms, whichever costs fewer flops
/// for the layer's sizes (the mixed ghost clipping rule of Bu et al. 2022):
/// the Gram ("ghost") form Σ_{p,p'} (dy_p·dy_p')(col_p·col_p'), 2P²(K + Og),
/// or the Og × K gradient materialised, 2P·K·Og. The bias adds
/// ‖Σ_p dy_p‖². No parameter gradient is written.
extension Conv2d: PerExampleNormLayer {
    /// True when the Gram form is cheaper than materialising for P
    /// positions, K taps and Og output channels per group.
    public static func usesGramNorm(positions: Int, taps: Int, outputs: Int) -> Bool {
        positions * (taps + outputs) <= taps * outputs
    }

    /// The form this layer used in its last forward's geometry (for plans and docs).
    public var perExampleNormForm: String {
        Self.usesGramNorm(positions: planes.output, taps: taps, outputs: outChannels / groups) ? "gram" : "materialised"
    }

    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        guard let weight, let x = input else { throw ParmlError.state("conv2d backward without forward") }
        let p = planes, n = x.shape[0], cg = inChannels / groups, og = outChannels / groups, positions = p.output
        let gram = Self.usesGramNorm(positions: positions, taps: taps, outputs: og)
        let formSize = gram ? 2 * positions * positions : og * taps
        let scratch = try normScratch.shaped(Shape(formSize + (hasBias ? outChannels : 0)))
        let s = scratch.data, biasSums = s + formSize
        // oneDNN's plan computes dx for the whole batch; otherwise the loop below does, as `backward`.
        let plan = activePlan
        let dx = needInputGradient ? try gradInput.shaped(x.shape) : nil
        if plan == nil, !pointwise { dx?.fill(0) }
        let col = pointwise ? nil : try columns.shaped(Shape(taps, positions))
        for e in 0..<n {
            var sum: Float = 0
            for g in 0..<groups {
                let xs = x.data + (e * inChannels + g * cg) * p.input
                let dys = dy.data + (e * outChannels + g * og) * positions
                if let col { Kernels.im2col(xs, channels: cg, window, p, into: col.data) }
                let c = UnsafePointer(col?.data ?? xs)
                if gram {
                    sum += PerExampleNorms.gramSquaredNorm(
                        c, aFeatures: taps, dys, dFeatures: og, positions: positions, positionsAreRows: false, scratch: s)
                } else {
                    BLAS.gemm(
                        transA: false, transB: true, m: og, n: taps, k: positions,
                        dys, lda: positions, c, ldb: positions, beta: 0, s, ldc: taps)
                    sum += Kernels.sumOfSquares(s, count: og * taps)
                }
                guard plan == nil, let dx else { continue }
                // The column buffer is free once the norm has read it: dcol goes there.
                let dxs = dx.data + (e * inChannels + g * cg) * p.input
                BLAS.gemm(
                    transA: true, transB: false, m: taps, n: positions, k: og, weight.data + g * og * taps, lda: taps,
                    dys, ldb: positions, beta: 0, col?.data ?? dxs, ldc: positions)
                if let col { Kernels.col2im(col.data, channels: cg, window, p, into: dxs) }
            }
            if hasBias {
                for o in 0..<outChannels { biasSums[o] = 0 }
                Kernels.addPlaneSums(dy.data + e * outChannels * positions, into: biasSums, planes: outChannels, size: positions)
                sum += Kernels.sumOfSquares(biasSums, count: outChannels)
            }
            squaredNorms[e] += sum
        }
        if let plan, let dx { try plan.backward(x.data, weight.data, dy.data, dw: nil, db: nil, dx: dx.data) }
        return dx
    }
}
