import ParmlTensor

/// Training windows over one array of N token ids, as nanoGPT's `get_batch`
/// draws them: sample j of an epoch is the window starting at s, inputs
/// ids[s..<s+T] and targets ids[s+1...s+T] (the next token at each place).
///
/// Windows are cut when a batch asks for them, never stored: the dataset
/// holds the ids once (4 bytes each, or a token file read in place, its
/// own width), whatever T and the window count are.
///
/// - random: s is drawn uniformly from 0...N-T-1 by Philox(seed) keyed on
///   (epoch, j), so the windows of an epoch depend on the global sample
///   index only, never on how a batch is split over ranks or micro-batches.
/// - sequential: s = j·T, the (N-1)/T non-overlapping windows that cover
///   the data once per epoch (in the batcher's order: shuffled or not).
public final class TokenDataset: BatchSource {
    public enum Mode: Int32 {
        case random = 1, sequential = 2
    }

    /// The ids, each in 0...2^24 (exact as the float32 inputs the engine
    /// reads): an (N) int32 tensor, or a token file's bytes in place.
    public let ids: TokenIDs
    /// T, the window length.
    public let blockSize: Int
    public let mode: Mode
    /// Keys the random windows (the trainer's strategy seed does not).
    public let seed: UInt64
    /// Windows per epoch.
    public let count: Int
    /// The largest id plus one: targets are ids, so this is the class count a loss needs.
    public let numClasses: Int?
    /// Where the largest id that is some window's target sits (for `fitProbe`).
    private let largestTarget: Int
    private let rng: Philox

    /// Takes `ids` as it is (no copy); it must not change afterwards.
    /// `windows` is the random mode's windows per epoch (nil: (N-1)/T);
    /// sequential mode always has (N-1)/T and refuses another count.
    /// Throws `.invalidArgument` for T < 1, fewer than T+1 ids, an id
    /// outside 0...2^24 or a window count outside 1...2^31-1.
    public convenience init(ids: Tensor, blockSize: Int, mode: Mode, seed: UInt64, windows: Int? = nil) throws {
        guard ids.dtype == .int32, ids.shape.rank == 1 else {
            throw ParmlError.internal("token ids reach the engine as \(ids.dtype.name) \(ids.shape); the C layer makes them (N) int32")
        }
        try self.init(
            ids: TokenIDs(base: UnsafeRawPointer(ids.data), count: ids.count, type: .int32, owner: ids), blockSize: blockSize, mode: mode,
            seed: seed, windows: windows)
    }

    /// The same over ids of any token file type, read where they lie
    /// (`TokenIDs`). Every id is read once here, to check it and find the largest.
    public init(ids: TokenIDs, blockSize: Int, mode: Mode, seed: UInt64, windows: Int? = nil) throws {
        guard blockSize >= 1 else { throw ParmlError.invalidArgument("block size must be at least 1, got \(blockSize)") }
        let n = ids.count
        guard n > blockSize else {
            throw ParmlError.invalidArgument(
                "\(n) token ids make no window of block size \(blockSize): a window needs \(blockSize + 1) (inputs and the next token)")
        }
        var top: Int32 = 0, topTarget: Int32 = -1, topAt = 1
        for i in 0..<n {
            let v = ids[i]
            guard v >= 0, v <= 1 << 24 else {
                throw ParmlError.invalidArgument("token id \(i) is \(v), outside 0...2^24 (ids go into the model as exact floats)")
            }
            top = max(top, v)
            if i >= 1 && v > topTarget { (topTarget, topAt) = (v, i) }
        }
        let all = (n - 1) / blockSize
        switch (mode, windows) {
        case (_, nil): count = all
        case (.random, let w?):
            guard w >= 1, w <= Int(Int32.max) else {
                throw ParmlError.invalidArgument("windows per epoch must be in 1...2^31-1, got \(w)")
            }
            count = w
        case (.sequential, let w?):
            throw ParmlError.invalidArgument(
                "sequential windows cover the data once per epoch ((N-1)/T = \(all) windows); a count (\(w)) is for random mode")
        }
        self.ids = ids
        self.blockSize = blockSize
        self.mode = mode
        self.seed = seed
        numClasses = Int(top) + 1
        largestTarget = topAt
        rng = Philox(seed: seed)
    }

    /// (windows, T): what one epoch's inputs would be, stacked.
    public var inputShape: Shape { Shape(count, blockSize) }

    /// The start s of sample j of `epoch` (j in 0..<count, epoch ≥ 0).
    @inline(__always)
    public func start(ofSample j: Int, epoch: Int) -> Int {
        switch mode {
        case .sequential:
            return j * blockSize
        case .random:
            // Sample j owns counters j·2^32 ..< (j+1)·2^32: its draw (and a
            // rare rejection redraw) never depends on another sample's.
            var draws = DrawSequence(rng: rng, stream: RandomStream.tokenWindows(epoch: epoch), counter: UInt64(j) << 32)
            return Int(draws.below(UInt64(ids.count - blockSize)))
        }
    }

    /// Inputs become float32 ids (the engine's input type), targets stay int32.
    public func copy(samples: UnsafeBufferPointer<Int>, epoch: Int, inputs: Tensor, targets: Tensor) throws {
        guard inputs !== targets, inputs !== ids.owner, targets !== ids.owner else {
            throw ParmlError.invalidArgument("fill needs two distinct tensors that are not the dataset's own")
        }
        guard epoch >= 0 else { throw ParmlError.invalidArgument("epoch \(epoch) is negative") }
        let t = blockSize, rows = samples.count
        try inputs.resize(Shape(rows, t), dtype: .float32)
        try targets.resize(Shape(rows, t), dtype: .int32)
        for r in 0..<rows {
            let s = start(ofSample: samples[r], epoch: epoch)
            ids.window(at: s, count: t, inputs: inputs.data + r * t, targets: targets.int32s + r * t)
        }
    }

    /// One window, (1, T), whose targets hold the largest id any window
    /// can ask for: if the loss takes it, it takes every window.
    public func fitProbe() throws -> (inputShape: Shape, targets: Tensor) {
        let s = min(largestTarget - 1, ids.count - blockSize - 1)
        let targets = try Tensor(shape: Shape(1, blockSize), dtype: .int32)
        for k in 0..<blockSize { targets.int32s[k] = ids[s + 1 + k] }
        return (Shape(1, blockSize), targets)
    }
}

/// Token ids where they lie: little-endian integers of one `TokenFileType`
/// at `base` (a token file mapped in place, or an int32 tensor), kept alive
/// by `owner`. Checked by `TokenDataset`'s initialiser.
public struct TokenIDs: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let count: Int
    public let type: TokenFileType
    public let owner: AnyObject

    public init(base: UnsafeRawPointer, count: Int, type: TokenFileType, owner: AnyObject) {
        self.base = base
        self.count = count
        self.type = type
        self.owner = owner
    }

    /// Id i as an Int32 (a uint32 id past Int32.max reads as negative: refused at init).
    @inline(__always)
    public subscript(i: Int) -> Int32 {
        switch type {
        case .uint8: Int32(base.load(fromByteOffset: i, as: UInt8.self))
        case .uint16: Int32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .uint32, .int32: Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
        }
    }

    /// The window at `s`: ids s..<s+count as floats into `inputs`, ids
    /// s+1...s+count into `targets`. One switch a window, not a value.
    @inline(__always)
    func window(at s: Int, count t: Int, inputs x: UnsafeMutablePointer<Float>, targets y: UnsafeMutablePointer<Int32>) {
        @inline(__always) func each(_ id: (Int) -> Int32) {
            var previous = id(s)
            for k in 0..<t {
                x[k] = Float(previous)
                previous = id(s + k + 1)
                y[k] = previous
            }
        }
        switch type {
        case .uint8: each { Int32(base.load(fromByteOffset: $0, as: UInt8.self)) }
        case .uint16: each { Int32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        case .uint32, .int32: each { Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        }
    }
}
