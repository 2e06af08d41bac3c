import ParmlTensor

/// What generate asks of the model before each token: the logits of the
/// token after `ids`. Each call's ids are the last call's plus one token
/// (or a new prompt). The result is the model's buffer, valid until its
/// next forward or decode.
protocol NextTokenLogits: AnyObject {
    func logits(after ids: [Int]) throws -> UnsafeBufferPointer<Float>
}

/// The row of `y` (1, T, vocabulary) for the last of T positions fed as `x`.
private func lastRow(_ y: Tensor, for x: Tensor) throws -> UnsafeBufferPointer<Float> {
    let t = x.shape[1]
    guard y.shape.rank == 3, y.shape[0] == 1, y.shape[1] == t, y.shape[2] >= 1 else {
        throw ParmlError.shape("generate needs logits (1, T, vocabulary) for ids (1, T); the model gives \(y.shape) for \(x.shape)")
    }
    return UnsafeBufferPointer(start: y.data + (t - 1) * y.shape[2], count: y.shape[2])
}

/// Ids (travelling as floats; the embedding checks them) into x (1, T).
private func feed<C: Collection<Int>>(_ ids: C, into x: Tensor) throws {
    try x.resize(Shape(1, ids.count))
    for (i, id) in ids.enumerated() { x.data[i] = Float(id) }
}

/// No cache: a forward over the latest `sequenceLimit` tokens per token,
/// O(T²·C) in attention and O(T·C²) in the rest for a context of T.
final class WindowLogits: NextTokenLogits {
    let model: Model
    let limit: Int
    let x: Tensor

    init(_ model: Model) throws {
        self.model = model
        limit = model.sequenceLimit ?? Int.max
        x = try Tensor(shape: Shape(1, 1))
    }

    func logits(after ids: [Int]) throws -> UnsafeBufferPointer<Float> {
        try feed(ids.suffix(limit), into: x)
        return try lastRow(model.forward(x, PassContext(training: false)), for: x)
    }
}

/// The layers' key/value caches (IncrementalLayer): a forward over the
/// prompt (its latest `sequenceLimit` tokens) fills them, then a token at
/// position p is a forward over that token alone, attending over the p
/// cached positions: O(p·C + C²) instead of a pass over p + 1 tokens.
/// Learned positions make a sliding window another model, so once the
/// context outgrows the limit, each token re-runs the prompt step over the
/// latest `limit` tokens: the uncached path's cost, and its results.
final class CachedLogits: NextTokenLogits {
    let model: Model
    let limit: Int
    /// The tokens generate will ever hold: the caches need no more room.
    let tokens: Int
    /// Room first made for a model without a limit (it doubles as needed).
    let minimumRoom: Int
    let x: Tensor
    /// Positions the caches have room for, and how many leading ids they
    /// hold (nil after a cropped window: positions no longer match ids).
    private var capacity = 0
    private var held: Int?
    /// Tokens that took the one-token path (the rest re-ran a window).
    private(set) var steps = 0

    init(_ model: Model, tokens: Int, minimumRoom: Int = 1024) throws {
        self.model = model
        limit = model.sequenceLimit ?? Int.max
        self.tokens = tokens
        self.minimumRoom = minimumRoom
        x = try Tensor(shape: Shape(1, 1))
    }

    func logits(after ids: [Int]) throws -> UnsafeBufferPointer<Float> {
        let n = ids.count
        if let held, held == n - 1, n <= capacity {
            try x.resize(Shape(1, 1))  // within its room: no allocation
            x.data[0] = Float(ids[n - 1])
            self.held = n
            steps += 1
            return try lastRow(model.decode(x, at: n - 1), for: x)
        }
        let window = ids.suffix(limit)
        // Room for the whole run, up to the limit; without a limit, grow by
        // doubling (each growth re-runs the context once).
        capacity = max(capacity, min(limit, tokens, max(minimumRoom, 2 * window.count)))
        try model.beginSequence(capacity: capacity)
        try feed(window, into: x)
        held = window.count == n ? n : nil
        return try lastRow(model.decode(x, at: 0), for: x)
    }
}
