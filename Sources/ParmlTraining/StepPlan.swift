import ParmlParallel

/// Which rows of a global batch each data-parallel rank takes.
///
/// Fast mode: contiguous, balanced row ranges (the first N mod dp ranks get
/// one row more). Deterministic mode: the batch is cut into chunks of
/// `chunk` rows and each rank takes a balanced, contiguous range of chunks,
/// so chunk boundaries, and with them every GEMM shape, are the same as in
/// serial training.
struct StepPlan: Sendable {
    let samples: Int
    let ranks: Int
    let chunk: Int?
    /// The global index of the first row the step's tensors hold: 0 when
    /// they hold the global batch; the replica's first row when each
    /// process passes its own rows (MPI, local batches).
    let firstLocalRow: Int
    /// Uneven local data: each replica's own row count (fast mode only),
    /// its rows following the previous replicas'. Nil: balanced ranges.
    let counts: [Int]?

    init(samples: Int, ranks: Int, deterministicChunk: Int?, firstLocalRow: Int = 0, counts: [Int]? = nil) {
        self.samples = samples
        self.ranks = ranks
        self.chunk = deterministicChunk
        self.firstLocalRow = firstLocalRow
        self.counts = counts
    }

    var chunkCount: Int {
        guard let chunk else { return 0 }
        return (samples + chunk - 1) / chunk
    }

    /// Chunk indices of rank r (deterministic mode).
    func chunks(of r: Int) -> Range<Int> {
        Sharding.range(count: chunkCount, parts: ranks, index: r, alignment: 1)
    }

    /// Global rows of chunk i (deterministic mode).
    func rows(ofChunk i: Int) -> Range<Int> {
        let c = chunk ?? samples
        return (i * c)..<min((i + 1) * c, samples)
    }

    /// Global rows of rank r.
    func rows(of r: Int) -> Range<Int> {
        if let counts {
            let first = counts[..<r].reduce(0, +)
            return first..<(first + counts[r])
        }
        if chunk != nil {
            let cs = chunks(of: r)
            if cs.isEmpty { return samples..<samples }
            return rows(ofChunk: cs.lowerBound).lowerBound..<rows(ofChunk: cs.upperBound - 1).upperBound
        }
        return Sharding.range(count: samples, parts: ranks, index: r, alignment: 1)
    }
}
