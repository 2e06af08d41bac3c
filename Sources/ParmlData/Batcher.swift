import ParmlTensor

/// Cuts a dataset (in memory, or token windows) into batches in a
/// per-epoch sample order and copies each batch into caller-owned tensors.
///
/// The order of epoch e is a pure function of (seed, e): it is recomputed
/// from the identity every epoch, never from the previous one, so a run
/// resumed at epoch e sees the batches the uninterrupted run saw, and every
/// rank computing it gets the same order without talking to the others.
public struct Batcher {
    public let dataset: any BatchSource
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    /// The epoch whose order `fill` uses.
    public private(set) var epoch: Int = 0
    /// Batches per epoch: a partial last batch counts unless `dropLast`.
    public let batchCount: Int

    /// Sample index at each position of the epoch. Allocated once here and
    /// rewritten in place by `startEpoch`.
    private var order: [Int]
    /// Weighted sampling: running sums of the sample weights (empty otherwise).
    private let cumulativeWeights: [Double]
    /// The dataset's augmentation when this batcher forms training batches,
    /// and one image plane of scratch for it (allocated here, once).
    private let augmentation: Augmentation?
    private let scratch: Tensor?

    /// Prepares epoch 0. Throws `.invalidArgument` for a batch size below 1,
    /// and when `dropLast` would leave no batch at all (batchSize > N): an
    /// epoch that silently trains on nothing is never what was meant.
    ///
    /// With `sampleWeights` (one per sample, finite, >= 0, not all 0), each
    /// epoch draws its N positions with replacement, sample i with
    /// probability weights[i] / Σ weights (PyTorch's WeightedRandomSampler
    /// with replacement), instead of a permutation; `shuffle` is then moot.
    /// With `augment` (training batches), `fill` applies the dataset's
    /// augmentation, drawn from (seed, epoch, sample).
    public init(
        dataset: any BatchSource, batchSize: Int, shuffle: Bool, dropLast: Bool, seed: UInt64, sampleWeights: [Double]? = nil,
        augment: Bool = false
    ) throws {
        guard batchSize >= 1 else {
            throw ParmlError.invalidArgument("batch size must be at least 1, got \(batchSize)")
        }
        let n = dataset.count
        if dropLast && batchSize > n {
            throw ParmlError.invalidArgument(
                "batch size \(batchSize) is larger than the dataset (\(n) samples) and dropLast leaves no batch")
        }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        batchCount = dropLast ? n / batchSize : (n + batchSize - 1) / batchSize
        order = Array(0..<n)
        if let w = sampleWeights {
            guard !dataset.ordersItself else {
                throw ParmlError.invalidArgument("weighted sampling needs a dataset in memory; a stream draws its own order")
            }
            guard w.count == n else { throw ParmlError.invalidArgument("\(w.count) sample weights for \(n) samples") }
            if let i = w.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw ParmlError.invalidArgument("sample weight \(i) is \(w[i]); weights must be finite and >= 0")
            }
            var sum = 0.0
            cumulativeWeights = w.map { sum += $0; return sum }
            guard sum > 0 else { throw ParmlError.invalidArgument("every sample weight is 0: nothing to draw") }
        } else {
            cumulativeWeights = []
        }
        let a = augment ? dataset.augmentation : nil
        augmentation = a
        scratch = try a.map { a in
            let (h, w) = try a.planeSize(of: Shape(validated: Array(dataset.inputShape.dims.dropFirst())))
            return try Tensor(shape: Shape(h * w))
        }
        startEpoch(0)
    }

    /// The sample order of the current epoch (position → sample index).
    public var sampleOrder: [Int] { order }

    /// Sets the sample order for `epoch`: the identity without shuffling,
    /// otherwise a Fisher–Yates shuffle driven by Philox(seed) on the stream
    /// `RandomStream.shuffle(epoch:)`; with sample weights, N draws on the
    /// stream `RandomStream.weightedSampling(epoch:)`. Allocates nothing.
    /// `epoch` must be non-negative (the stream id is built from it);
    /// callers at the C ABI check it.
    public mutating func startEpoch(_ epoch: Int) {
        precondition(epoch >= 0, "epoch \(epoch) is negative")
        self.epoch = epoch
        let n = order.count
        let seed = self.seed
        let shuffle = self.shuffle && !dataset.ordersItself  // a stream's positions are already its shuffled order
        if let total = cumulativeWeights.last {
            var draws = DrawSequence(rng: Philox(seed: seed), stream: RandomStream.weightedSampling(epoch: epoch))
            let cumulative = cumulativeWeights  // shares the storage: no copy
            order.withUnsafeMutableBufferPointer { p in
                cumulative.withUnsafeBufferPointer { c in
                    for i in 0..<n {
                        // u uniform in [0, total) (kept below it where the
                        // product rounds up): the first sample whose running
                        // sum exceeds it, so a weight of 0 is never drawn.
                        let u = min(Double(draws.word64() >> 11) * 0x1p-53 * total, total.nextDown)
                        var lo = 0, hi = n - 1
                        while lo < hi {
                            let mid = (lo + hi) / 2
                            if c[mid] > u { hi = mid } else { lo = mid + 1 }
                        }
                        p[i] = lo
                    }
                }
            }
            return
        }
        order.withUnsafeMutableBufferPointer { p in
            for i in 0..<n { p[i] = i }
            guard shuffle, n > 1 else { return }
            var draws = DrawSequence(rng: Philox(seed: seed), stream: RandomStream.shuffle(epoch: epoch))
            var i = n - 1
            while i > 0 {
                let j = draws.below(UInt64(i + 1))
                p.swapAt(i, Int(j))
                i -= 1
            }
        }
    }

    /// Number of samples in batch `batch`: `batchSize`, or less for the last
    /// batch when N is not a multiple and `dropLast` is off.
    public func size(ofBatch batch: Int) -> Int {
        min(batchSize, dataset.count - batch * batchSize)
    }

    /// Copies batch `batch` of the current epoch into `inputs` (resized to
    /// (b, sample dims...)) and `targets` (resized to (b, target dims...))
    /// and returns b. Reuses the tensors' memory once they are big enough,
    /// so steady-state calls allocate nothing.
    @discardableResult
    public func fill(batch: Int, inputs: Tensor, targets: Tensor) throws -> Int {
        guard batch >= 0, batch < batchCount else {
            throw ParmlError.invalidArgument("batch \(batch) is out of range: this epoch has \(batchCount) batches")
        }
        let b = size(ofBatch: batch)
        try fill(batch: batch, rows: 0..<b, inputs: inputs, targets: targets)
        return b
    }

    /// Copies rows `rows` of batch `batch` (positions within the batch) into
    /// `inputs` and `targets`, resized to (rows.count, ...). This is a
    /// data-parallel rank's or a micro-batch's share of the global batch,
    /// taken in the same epoch order the whole batch would have.
    public func fill(batch: Int, rows: Range<Int>, inputs: Tensor, targets: Tensor) throws {
        guard batch >= 0, batch < batchCount else {
            throw ParmlError.invalidArgument("batch \(batch) is out of range: this epoch has \(batchCount) batches")
        }
        let b = size(ofBatch: batch)
        guard rows.lowerBound >= 0, rows.upperBound <= b, !rows.isEmpty else {
            throw ParmlError.invalidArgument("rows \(rows) are not a non-empty part of batch \(batch), which has \(b) rows")
        }
        let first = batch * batchSize + rows.lowerBound
        try order.withUnsafeBufferPointer { p in
            let samples = UnsafeBufferPointer(rebasing: p[first..<first + rows.count])
            try dataset.copy(samples: samples, epoch: epoch, inputs: inputs, targets: targets)
            if let augmentation, let scratch {
                augmentation.apply(to: inputs, samples: samples, epoch: epoch, seed: seed, scratch: scratch.data)
            }
        }
    }
}

/// Uniform integers from consecutive Philox outputs: draw k is the k-th
/// 64-bit half of the blocks at counters c, c+1, c+2, … of one stream
/// (c = 0 for a shuffle; a token window's own counter range otherwise).
struct DrawSequence {
    let rng: Philox
    let stream: UInt64
    private var counter: UInt64
    private var spare: UInt64 = 0
    private var hasSpare = false

    init(rng: Philox, stream: UInt64, counter: UInt64 = 0) {
        self.rng = rng
        self.stream = stream
        self.counter = counter
    }

    @inline(__always)
    mutating func word64() -> UInt64 {
        if hasSpare {
            hasSpare = false
            return spare
        }
        let r = rng.block(
            UInt32(truncatingIfNeeded: counter), UInt32(truncatingIfNeeded: counter >> 32),
            UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
        counter &+= 1
        spare = UInt64(r.2) << 32 | UInt64(r.3)
        hasSpare = true
        return UInt64(r.0) << 32 | UInt64(r.1)
    }

    /// A uniform integer in 0..<bound, exactly uniform (Lemire's multiply
    /// and reject; the rejection almost never happens for bounds far below 2^64).
    @inline(__always)
    mutating func below(_ bound: UInt64) -> UInt64 {
        var m = word64().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold {
                m = word64().multipliedFullWidth(by: bound)
            }
        }
        return m.high
    }
}
