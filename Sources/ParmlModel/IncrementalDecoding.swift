import ParmlTensor

// Incremental decoding: generation's key/value cache. Shapes: one sequence
// (batch 1), x (1, T, ...) holds positions offset..<offset + T of it.
//   beginSequence(capacity: n)   forget the last sequence, room for n positions
//   decode(x, at: 0)             the prompt (prefill): T = its length
//   decode(x, at: p)             one new token at position p (T = 1), after
//                                positions 0..<p went through earlier calls
// A layer whose output at a position depends only on that position's input
// (linear, layer_norm, gelu, embedding, dropout in inference) decodes with
// its plain forward; attention keeps every position's keys and values, so a
// new token attends over them without recomputing them.

/// A layer that can run one sequence a few positions at a time, in
/// inference, keeping what later positions need. Generation uses it when
/// every layer of the model is one (`Model.supportsIncrementalDecoding`).
public protocol IncrementalLayer: Layer {
    /// Forgets any earlier sequence and makes room for `capacity` positions.
    /// It and a decode of several positions (a prompt) may allocate; a
    /// one-token decode reuses what they made.
    func beginSequence(capacity: Int) throws
    /// The inference forward of positions offset..<offset + T, x (1, T, ...),
    /// equal to rows offset..<offset + T of `forward` over the whole sequence.
    /// `offset` must be the number of positions decoded since `beginSequence`,
    /// and offset + T at most its capacity. The result is a buffer the layer
    /// owns, valid until its next forward or decode.
    func decode(_ x: Tensor, at offset: Int) throws -> Tensor
}

/// A layer that maps each position on its own: it decodes with its forward
/// and keeps nothing.
public protocol PositionwiseLayer: IncrementalLayer {}

extension PositionwiseLayer {
    public func beginSequence(capacity: Int) throws {}
    public func decode(_ x: Tensor, at offset: Int) throws -> Tensor { try forward(x, PassContext(training: false)) }
}

extension Sequential: IncrementalLayer {
    public func beginSequence(capacity: Int) throws {
        for l in layers { try Sequential.incremental(l).beginSequence(capacity: capacity) }
    }

    public func decode(_ x: Tensor, at offset: Int) throws -> Tensor {
        var h = x
        for l in layers { h = try Sequential.incremental(l).decode(h, at: offset) }
        return h
    }

    static func incremental(_ l: Layer) throws -> IncrementalLayer {
        guard let i = l as? IncrementalLayer else {
            throw ParmlError.unsupported("layer '\(l.kind)' cannot decode a sequence incrementally (no key/value cache path)")
        }
        return i
    }
}

extension Residual: IncrementalLayer {
    public func beginSequence(capacity: Int) throws { try body.beginSequence(capacity: capacity) }

    public func decode(_ x: Tensor, at offset: Int) throws -> Tensor {
        try join(x, body.decode(x, at: offset))
    }
}

extension Model {
    /// Whether every layer decodes incrementally, so generation can keep a
    /// key/value cache instead of a pass over the context per token.
    public var supportsIncrementalDecoding: Bool { allLayers.allSatisfy { $0 is IncrementalLayer } }

    /// Starts a sequence of up to `capacity` positions in every layer.
    public func beginSequence(capacity: Int) throws {
        guard isInitialized else { throw ParmlError.state("the model is not initialised; initialise it first") }
        guard capacity >= 1 else { throw ParmlError.invalidArgument("a sequence needs room for at least one position, got \(capacity)") }
        try root.beginSequence(capacity: capacity)
    }

    /// Runs positions offset..<offset + T of the sequence begun, x (1, T):
    /// the rows `forward` would give for them (IncrementalLayer.decode).
    public func decode(_ x: Tensor, at offset: Int) throws -> Tensor {
        guard isInitialized else { throw ParmlError.state("the model is not initialised; initialise it first") }
        guard x.shape.rank >= 2, x.shape[0] == 1, x.shape[1] >= 1 else {
            throw ParmlError.shape("incremental decoding takes one sequence (1, T, ...), got \(x.shape)")
        }
        return try root.decode(x, at: offset)
    }
}
