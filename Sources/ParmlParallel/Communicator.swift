import ParmlTensor

/// How values from different ranks combine.
public enum ReduceOp: Sendable {
    /// Σ over ranks, added in rank order 0, 1, ..., size−1 for every element.
    case sum
    /// The sum above, then multiplied by 1/size (`sum * (1 / Float(size))`:
    /// one rounding of the product, which can differ in the last bit from
    /// `sum / Float(size)` when size is not a power of two).
    case mean
}

/// Collective communication among the ranks of one group.
///
/// Every rank of a group calls the same collectives in the same order (SPMD);
/// a rank is one thread (threads backend) or one process (MPI backend).
/// Buffers are the caller's and are not kept after a call returns.
///
/// Determinism: a reduction adds the ranks' values in rank order for every
/// element, whatever the timing, so a run is bitwise reproducible.
///
/// Failure: when a rank fails (it calls `abort`, throws out of its work, or
/// does not reach a collective before the group's deadline), every rank's
/// current and later collective throws `ParmlError.communication` naming the
/// rank, the collective and its sequence number. No call waits forever.
public protocol Communicator: AnyObject {
    /// This rank's index in the group, 0..<size.
    var rank: Int { get }
    var size: Int { get }
    /// A label for messages ("world", "dp", ...).
    var name: String { get }

    func barrier() throws

    /// In place: every rank's buffer becomes the reduction of all ranks' buffers.
    func allReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) throws

    /// In place: rank r's `buffer[shard(r)]` becomes the reduction over ranks
    /// of their `buffer[shard(r)]`, with shard(r) = `Sharding.range(count:parts:size, index:r)`.
    /// The rest of each rank's buffer is left as it was.
    func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) throws

    /// The same with the shards given: rank r's part is `shards[r]`, the
    /// shards contiguous, in rank order, inside 0..<count, and any of them
    /// may be empty (a bucket of gradients meeting only some ranks' ZeRO
    /// shards). Every rank passes the same shards; the sum is in rank order.
    func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>], op: ReduceOp) throws

    /// In place: every rank's `buffer[shard(r)]` is copied to `buffer[shard(r)]` on all ranks.
    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws

    /// The same with the shards given, as for `reduceScatter(_:count:shards:op:)`:
    /// rank r's `buffer[shards[r]]` is copied to every rank (one block of
    /// ZeRO-3 parameters, each rank holding its shard's part of it).
    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>]) throws

    /// In place: every rank's buffer becomes a copy of rank `root`'s.
    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws

    /// Buffered: returns once the data is copied out of `buffer`. Messages
    /// between one pair of ranks arrive in the order they were sent.
    func send(_ buffer: UnsafePointer<Float>, count: Int, to peer: Int) throws

    /// Blocks until the next message from `peer` arrives; its length must equal `count`.
    func receive(_ buffer: UnsafeMutablePointer<Float>, count: Int, from peer: Int) throws

    /// A hint before a burst of sends to `peer`: up to `messages` messages of
    /// at most `floats` floats each may be in flight at once. A backend that
    /// buffers sends prepares that much room, so the sends allocate nothing.
    func reserveSends(to peer: Int, messages: Int, floats: Int) throws

    /// Collective over this group: ranks passing the same `color` form a new
    /// group, ordered by (key, rank in this group). Failures stay shared: an
    /// abort in any group of the world reaches every group.
    func split(color: Int, key: Int, name: String) throws -> Communicator

    /// Marks the whole world failed with `reason`; every rank's current and
    /// later collectives throw. Safe to call from any rank, more than once.
    func abort(reason: String)

    /// Throws `.communication` when the world was aborted: a rank checks it
    /// between pieces of local work (layers), so a rank woken after its
    /// step was given up on stops at once instead of computing on.
    func throwIfAborted(_ what: @autoclosure () -> String) throws
}

extension Communicator {
    public func reserveSends(to peer: Int, messages: Int, floats: Int) throws {}

    /// Throws unless `shards` are one range per rank, in rank order, not
    /// overlapping, inside 0..<count (reduceScatter with shards).
    public func checkShards(_ shards: [Range<Int>], count: Int, what: String) throws {
        guard shards.count == size else {
            throw ParmlError.invalidArgument("\(name): \(what): \(shards.count) shards for \(size) ranks")
        }
        var end = 0
        for (r, s) in shards.enumerated() where !s.isEmpty {
            guard s.lowerBound >= end, s.upperBound <= count else {
                throw ParmlError.invalidArgument("\(name): \(what): shard \(r) \(s) overlaps another or leaves 0..<\(count)")
            }
            end = s.upperBound
        }
    }
}

/// The canonical way a flat buffer is cut among ranks (ZeRO shards,
/// reduce-scatter). Shards are contiguous, in rank order, and their
/// boundaries fall on multiples of `alignment` elements, so a fixed block
/// of that size never straddles two shards.
public enum Sharding {
    /// The gradient-norm block size (GradientClipping.blockSize), so norms
    /// of sharded gradients add the same block sums as whole ones.
    public static let defaultAlignment = 1024

    /// The range of `count` elements that part `index` of `parts` holds.
    public static func range(count: Int, parts: Int, index: Int, alignment: Int = defaultAlignment) -> Range<Int> {
        precondition(parts >= 1 && index >= 0 && index < parts && alignment >= 1)
        let blocks = (count + alignment - 1) / alignment
        let base = blocks / parts, extra = blocks % parts
        let firstBlock = index * base + min(index, extra)
        let myBlocks = base + (index < extra ? 1 : 0)
        let lo = min(count, firstBlock * alignment)
        let hi = min(count, (firstBlock + myBlocks) * alignment)
        return lo..<hi
    }
}
