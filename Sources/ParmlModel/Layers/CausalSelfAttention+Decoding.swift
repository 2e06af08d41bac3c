import ParmlTensor

// Incremental decoding of attention (IncrementalDecoding.swift): the
// key/value cache. Shapes: x (1, T, C) holds positions p₀..<p₀ + T, the
// sequence so far has L = p₀ + T positions, d the heads' width.
//   qkv (T, 3d) = x·Wₐᵀ + bₐ             as forward
//   K, V (capacity, d): rows p₀..<L ← k, v of the new positions
//   S (T, L)    = q·Kᵀ/√hs per head      strided views, ld 3d and d
//   P           = softmax_j(S), j ≤ p₀ + i (causal, exactly 0 beyond)
//   y (T, hs)   = P·V per head, then out = y·Wₚᵀ + bₚ
// A new token (T = 1, matrix-vector products) costs O(C² + L·C) here, not
// a pass over L tokens; the prompt (p₀ = 0) runs forward's products.
extension CausalSelfAttention: IncrementalLayer {
    public func beginSequence(capacity: Int) throws {
        _ = try cachedKeys.shaped(Shape(capacity, inner))
        _ = try cachedValues.shaped(Shape(capacity, inner))
        _ = try probs.shaped(Shape(1, capacity))  // a token's scores: steps never grow it
        cachedPositions = 0
    }

    public func decode(_ x: Tensor, at offset: Int) throws -> Tensor {
        guard let attnWeight, let projWeight else { throw ParmlError.state("causal_self_attention is not bound to parameters") }
        _ = try outputShape(for: x.shape)
        let t = x.shape[1], c = features, d = inner, c3 = 3 * d
        let capacity = cachedKeys.tensor.shape.rank == 2 ? cachedKeys.tensor.shape[0] : 0
        guard x.shape[0] == 1, offset == cachedPositions, offset + t <= capacity else {
            throw ParmlError.state(
                "causal_self_attention holds \(cachedPositions) of \(capacity) cached positions; it cannot decode \(x.shape) at position \(offset)")
        }
        let q = try qkv.shaped(Shape(1, t, c3))
        if let attnBias { Kernels.broadcastRows(attnBias.data, into: q.data, rows: t, cols: c3) }
        BLAS.gemm(
            transA: false, transB: true, m: t, n: c3, k: c, x.data, lda: c, attnWeight.data, ldb: c,
            beta: attnBias == nil ? 0 : 1, q.data, ldc: c3)
        let keys = cachedKeys.tensor.data, values = cachedValues.tensor.data
        for i in 0..<t {
            (keys + (offset + i) * d).update(from: q.data + i * c3 + d, count: d)
            (values + (offset + i) * d).update(from: q.data + i * c3 + 2 * d, count: d)
        }
        cachedPositions = offset + t

        let y = try heads_.shaped(Shape(1, t, d))
        if t == 1 { try attendOneToken(q, into: y) } else { try attendOverCache(q, into: y, rows: t, offset: offset) }

        let out = try output.shaped(x.shape)
        if let projBias { Kernels.broadcastRows(projBias.data, into: out.data, rows: t, cols: c) }
        BLAS.gemm(
            transA: false, transB: true, m: t, n: c, k: d, y.data, lda: d, projWeight.data, ldb: d,
            beta: projBias == nil ? 0 : 1, out.data, ldc: c)
        return out
    }

    /// One query at the last cached position: matrix-vector products, per
    /// head s (L) = K·q/√hs, softmax, y = Vᵀ·s. (OpenBLAS's small-matrix
    /// sgemm mallocs for one row on some CPUs; gemv does not.)
    private func attendOneToken(_ q: Tensor, into y: Tensor) throws {
        let d = inner, hs = headSize, len = cachedPositions
        let s = try probs.shaped(Shape(1, len))  // within beginSequence's room
        let keys = cachedKeys.tensor.data, values = cachedValues.tensor.data
        let scale = 1 / Float(hs).squareRoot()
        y.fill(0)  // gemv's beta 0 may keep a NaN already in y (OpenBLAS's scal): start from zeros
        for h in 0..<heads {
            s.fill(0)
            BLAS.gemv(trans: false, m: len, n: hs, alpha: scale, keys + h * hs, lda: d, q.data + h * hs, beta: 0, s.data)
            CausalSelfAttention.causalSoftmax(s.data, rows: 1, columns: len, offset: len - 1)
            BLAS.gemv(trans: true, m: len, n: hs, values + h * hs, lda: d, s.data, beta: 0, y.data + h * hs)
        }
    }

    /// Several queries, positions offset..<offset + t (the prompt): forward's
    /// products, with keys and values read from the cache.
    private func attendOverCache(_ q: Tensor, into y: Tensor, rows t: Int, offset: Int) throws {
        let d = inner, hs = headSize, c3 = 3 * d, len = offset + t
        let s = try probs.shaped(Shape(t, len))  // one head's scores at a time
        let keys = cachedKeys.tensor.data, values = cachedValues.tensor.data
        let scale = 1 / Float(hs).squareRoot()
        for h in 0..<heads {
            BLAS.gemm(
                transA: false, transB: true, m: t, n: len, k: hs, alpha: scale, q.data + h * hs, lda: c3, keys + h * hs, ldb: d,
                beta: 0, s.data, ldc: len)
            CausalSelfAttention.causalSoftmax(s.data, rows: t, columns: len, offset: offset)
            BLAS.gemm(
                transA: false, transB: false, m: t, n: hs, k: len, s.data, lda: len, values + h * hs, ldb: d,
                beta: 0, y.data + h * hs, ldc: d)
        }
    }
}
