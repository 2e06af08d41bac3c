import ParmlTensor

extension Dataset: BatchSource {
    public var inputShape: Shape { inputs.shape }

    /// Copies whole rows: sample s is row s of both tensors.
    public func copy(samples: UnsafeBufferPointer<Int>, epoch: Int, inputs batchInputs: Tensor, targets batchTargets: Tensor) throws {
        let src = inputs, srcT = targets
        guard batchInputs !== src, batchInputs !== srcT, batchTargets !== src, batchTargets !== srcT, batchInputs !== batchTargets else {
            throw ParmlError.invalidArgument("fill needs two distinct tensors that are not the dataset's own")
        }
        // The dataset owns its tensors by convention only; a resized one
        // would make the row arithmetic below read past its end.
        guard src.shape.rank >= 2, src.shape[0] == count, srcT.shape[0] == count else {
            throw ParmlError.state("the dataset's tensors were resized after it was made")
        }
        let rows = samples.count
        try batchInputs.resize(src.shape.withLeading(rows), dtype: src.dtype)
        try batchTargets.resize(srcT.shape.withLeading(rows), dtype: srcT.dtype)

        // Rows are copied as 4-byte words: float32 and int32 alike.
        let inRow = src.shape.rowSize * src.dtype.size / 4
        let tRow = srcT.shape.rowSize * srcT.dtype.size / 4
        let inSrc = src.data, tSrc = srcT.data
        let inDst = batchInputs.data, tDst = batchTargets.data
        for r in 0..<rows {
            let s = samples[r]
            (inDst + r * inRow).update(from: inSrc + s * inRow, count: inRow)
            (tDst + r * tRow).update(from: tSrc + s * tRow, count: tRow)
        }
    }

    public func fitProbe() throws -> (inputShape: Shape, targets: Tensor) { (inputs.shape, targets) }
}
