import ParmlParallel
import ParmlTensor

/// A 16-bit wire format for gradients: bf16 keeps float32's exponent range
/// with 8 bits of mantissa; fp16 keeps 11 bits of mantissa within ±65504.
/// Both round to nearest, ties to even.
public enum GradientCompression: Int32, Sendable {
    case none = 0
    case bf16 = 1
    case fp16 = 2

    var name: String {
        switch self {
        case .none: "none"
        case .bf16: "bf16"
        case .fp16: "fp16"
        }
    }

    /// One value through the wire (pml_wire_encode/_decode do arrays).
    func encode(_ x: Float) -> UInt16 {
        var h: UInt16 = 0, e: Float = 0, v = x
        Kernels.wireEncode(rawValue, &v, &h, error: &e, count: 1)
        return h
    }

    func decode(_ h: UInt16) -> Float {
        var x: Float = 0, v = h
        Kernels.wireDecode(rawValue, &v, &x, adding: false, count: 1)
        return x
    }
}

/// The data-parallel gradient sum in a 16-bit wire format with error
/// feedback: a ring reduce-scatter, then a ring all-gather, each hop
/// carrying 16-bit values (half of float32's bytes, for any group size).
///
/// Every quantisation's rounding error stays with the rank that rounded —
/// its own contribution, a partial sum it forwards, or the final sum of the
/// segment it owns — and is added to that rank's gradient in the next step.
/// So over T steps the applied sums add up to the true sums minus the errors
/// still held (one rounding's worth), as with Vogels et al.'s and 1-bit
/// Adam's error feedback. The owner's rounded sum is what every rank
/// applies: ranks stay identical, and a run is reproducible.
final class CompressedRing {
    let format: GradientCompression
    /// This rank's carried rounding error, one float per gradient.
    let error: Tensor
    /// The float32 working copy: own contribution plus received partials.
    private let work: Tensor
    /// 16-bit payloads, two to a float slot (what the communicator moves).
    private let outgoing: Tensor
    private let incoming: Tensor
    /// Bytes this rank sent in the last reduction.
    private(set) var bytesSent = 0

    init(format: GradientCompression, count: Int) throws {
        self.format = format
        error = try Tensor(shape: Shape(max(count, 1)))
        error.fill(0)
        work = try Tensor(shape: Shape(max(count, 1)))
        outgoing = try Tensor(shape: Shape(0))
        incoming = try Tensor(shape: Shape(0))
    }

    /// Float slots that carry `n` 16-bit values.
    static func slots(_ n: Int) -> Int { (n + 1) / 2 }

    /// Bytes one rank sends to sum `count` values of `bytesPerValue` over
    /// `ranks` ranks with a ring (reduce-scatter, then all-gather): 2·(p−1)/p of them.
    static func ringBytes(count: Int, ranks: Int, bytesPerValue: Int) -> Int {
        ranks > 1 ? 2 * (ranks - 1) * count * bytesPerValue / ranks : 0
    }

    /// In place over `grads[0..<count]`: every rank's values become the sum
    /// over the group, as the owner of each segment rounded it.
    func allReduce(_ grads: UnsafeMutablePointer<Float>, count n: Int, comm: Communicator) throws {
        let p = comm.size, r = comm.rank
        guard p > 1, n > 0 else { return }
        let next = (r + 1) % p, previous = (r + p - 1) % p
        let maxSegment = Sharding.range(count: n, parts: p, index: 0, alignment: 1).count
        try outgoing.resize(Shape(CompressedRing.slots(maxSegment)))
        try incoming.resize(Shape(CompressedRing.slots(maxSegment)))
        try comm.reserveSends(to: next, messages: 2 * (p - 1), floats: CompressedRing.slots(maxSegment))
        bytesSent = 0
        let w = work.data, e = error.data
        // c = g + e: the contribution with last step's errors folded back.
        for i in 0..<n {
            w[i] = grads[i] + e[i]
            e[i] = 0
        }
        func segment(_ s: Int) -> Range<Int> { Sharding.range(count: n, parts: p, index: (s % p + p) % p, alignment: 1) }
        // Reduce-scatter: forward segment r − t (rounded, its error kept),
        // add the received partial of segment r − t − 1.
        for t in 0..<(p - 1) {
            try send(encoding: segment(r - t), of: w, keepingErrorIn: e, to: next, comm: comm)
            let into = segment(r - t - 1)
            try comm.receive(incoming.data, count: CompressedRing.slots(into.count), from: previous)
            decode(into, adding: true, into: w)
        }
        // Rank r now holds the whole sum of segment r + 1: it rounds it once
        // more (keeping that error too) and everyone applies the rounded value.
        let own = segment(r + 1)
        encode(own, of: w, keepingErrorIn: e)
        decodeOutgoing(own, into: w)
        // All-gather: pass the rounded segments round the ring unchanged.
        for t in 0..<(p - 1) {
            if t > 0 { outgoing.data.update(from: incoming.data, count: CompressedRing.slots(segment(r + 1 - t).count)) }
            let out = segment(r + 1 - t)
            try comm.send(outgoing.data, count: CompressedRing.slots(out.count), to: next)
            bytesSent += out.count * 2
            let into = segment(r - t)
            try comm.receive(incoming.data, count: CompressedRing.slots(into.count), from: previous)
            decode(into, adding: false, into: w)
        }
        grads.update(from: w, count: n)
    }

    private func send(
        encoding s: Range<Int>, of w: UnsafeMutablePointer<Float>, keepingErrorIn e: UnsafeMutablePointer<Float>, to peer: Int,
        comm: Communicator
    ) throws {
        encode(s, of: w, keepingErrorIn: e)
        try comm.send(outgoing.data, count: CompressedRing.slots(s.count), to: peer)
        bytesSent += s.count * 2
    }

    /// outgoing ← 16-bit w[s]; e[s] += w[s] − decoded.
    private func encode(_ s: Range<Int>, of w: UnsafeMutablePointer<Float>, keepingErrorIn e: UnsafeMutablePointer<Float>) {
        let h = UnsafeMutableRawPointer(outgoing.data).assumingMemoryBound(to: UInt16.self)
        Kernels.wireEncode(format.rawValue, w + s.lowerBound, h, error: e + s.lowerBound, count: s.count)
    }

    /// w[s] ← the values in `outgoing` (the owner applies what it sends).
    private func decodeOutgoing(_ s: Range<Int>, into w: UnsafeMutablePointer<Float>) {
        let h = UnsafeRawPointer(outgoing.data).assumingMemoryBound(to: UInt16.self)
        Kernels.wireDecode(format.rawValue, h, w + s.lowerBound, adding: false, count: s.count)
    }

    /// w[s] += (or ←) the values in `incoming`.
    private func decode(_ s: Range<Int>, adding: Bool, into w: UnsafeMutablePointer<Float>) {
        let h = UnsafeRawPointer(incoming.data).assumingMemoryBound(to: UInt16.self)
        Kernels.wireDecode(format.rawValue, h, w + s.lowerBound, adding: adding, count: s.count)
    }
}
