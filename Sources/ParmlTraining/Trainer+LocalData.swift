import ParmlData
import ParmlTensor

/// Local data per process (MPI): each data-parallel replica trains on its
/// own dataset, of any size, and passes its own rows each step (local
/// batches with uneven counts). Epochs end together, as PyTorch's `Join`
/// makes uneven inputs end together: the replicas agree on the longest
/// one's batch count when an epoch starts, and one that has run out passes
/// empty batches until then, so every collective has all its ranks and the
/// mean of each step is over the rows actually passed.
extension Trainer {
    /// Turns local data on (which turns local batches on) or off. Needs the
    /// MPI backend, a data-parallel-only layout (pp = tp = 1) and the default
    /// (fast) mode: deterministic mode's chunks are cut from balanced batches.
    public func setLocalData(_ on: Bool) throws {
        guard on else {
            localData = false
            return
        }
        guard processWorld != nil else {
            throw ParmlError.invalidArgument("local data needs the MPI backend: on threads every replica is in this process")
        }
        guard layout.mesh.pp == 1, layout.mesh.tp == 1 else {
            throw ParmlError.unsupported(
                "local data takes a data-parallel layout only (pp = \(layout.mesh.pp), tp = \(layout.mesh.tp)); use local batches of equal size")
        }
        guard !strategy.deterministic else {
            throw ParmlError.unsupported("local data needs the default mode: deterministic mode cuts its chunks from balanced batches")
        }
        try setLocalBatches(true)
        localData = true
    }

    /// The largest of the replicas' batch counts (collective over the
    /// data-parallel group; one all-reduce of dp values).
    func agreedBatchCount(_ mine: Int) throws -> Int {
        guard let me = ranks.first, let data = me.comms?.data else { throw ParmlError.internal("no data-parallel group") }
        guard mine < 1 << 24 else { throw ParmlError.invalidArgument("local data: \(mine) batches an epoch, more than 2^24") }
        var counts = [Float](repeating: 0, count: layout.mesh.dp)
        counts[me.coordinate.data] = Float(mine)
        try counts.withUnsafeMutableBufferPointer { try data.allReduce($0.baseAddress!, count: $0.count, op: .sum) }
        return Int(counts.max() ?? 0)
    }

    /// Sets the batch tensors to no rows, shaped as `data`'s: this replica's
    /// part of a step after its data ran out. Returns 0.
    func emptyBatch(like data: any BatchSource) throws -> Int {
        let probe = try data.fitProbe()
        try batchInputs.resize(probe.inputShape.withLeading(0), dtype: .float32)
        try batchTargets.resize(probe.targets.shape.withLeading(0), dtype: probe.targets.dtype)
        return 0
    }
}
