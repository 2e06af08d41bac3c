/// What one rank publishes when it enters a collective: the call (checked
/// against every peer's before any memory is touched) and its buffer.
/// One cache line; each rank owns two, used alternately by sequence parity
/// (a rank can be at most one collective ahead of the slowest peer's check).
struct Slot {
    var seq = -1
    var kind = 0
    var count = 0
    /// Compared across ranks: the reduce op or the broadcast root.
    var arg = 0
    /// split only: this rank's color and key (not compared).
    var color = 0
    var key = 0
    var pointer: UnsafeMutableRawPointer? = nil
    /// split only: the new group, published by its leader.
    var object: UnsafeMutableRawPointer? = nil
}

/// The memory the ranks of one group share.
///
/// Protocol: each rank has a monotonically increasing `phase` that only it
/// stores; it advances it at every synchronisation point of a collective, and
/// a peer waits until every phase reaches a target. A rank writes its slot
/// before advancing into a collective, so a peer that sees the phase sees the
/// slot (SC store / SC load). `active[r]` is seq + 1 while rank r may touch
/// peers' buffers in collective `seq`, 0 otherwise: a rank leaving a
/// collective because of an abort waits for peers to stop touching its
/// buffer before it returns it to its caller.
///
/// `@unchecked Sendable`: slots are written only by their owner rank and read
/// by peers after the owner's phase store publishes them; phases and active
/// flags are atomics; mailboxes carry their own lock.
final class GroupState: @unchecked Sendable {
    let world: WorldCore
    let name: String
    let size: Int
    /// World rank of each member, in group order.
    let worldRanks: [Int]
    let isWorld: Bool
    let phases: PaddedAtomicInts
    let active: PaddedAtomicInts
    let slots: UnsafeMutablePointer<Slot>
    /// Indexed by source * size + destination.
    let mailboxes: [Mailbox]

    init(world: WorldCore, name: String, worldRanks: [Int], isWorld: Bool) {
        self.world = world
        self.name = name
        self.size = worldRanks.count
        self.worldRanks = worldRanks
        self.isWorld = isWorld
        phases = PaddedAtomicInts(count: size)
        active = PaddedAtomicInts(count: size)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 2 * size * MemoryLayout<Slot>.stride, alignment: 128)
        slots = raw.bindMemory(to: Slot.self, capacity: 2 * size)
        slots.initialize(repeating: Slot(), count: 2 * size)
        mailboxes = (0..<(size * size)).map { _ in Mailbox() }
    }

    deinit {
        slots.deinitialize(count: 2 * size)
        UnsafeMutableRawPointer(slots).deallocate()
    }

    @inline(__always)
    func slot(_ rank: Int, _ seq: Int) -> UnsafeMutablePointer<Slot> { slots + (2 * rank + (seq & 1)) }

    @inline(__always)
    func mailbox(from source: Int, to destination: Int) -> Mailbox { mailboxes[source * size + destination] }

    /// "rank 2 of tp" or, in a group other than the world, "rank 2 of tp (world rank 6)".
    func describe(rank: Int) -> String {
        isWorld ? "rank \(rank) of \(name)" : "rank \(rank) of \(name) (world rank \(worldRanks[rank]))"
    }

    /// "rank 1" / "ranks 1, 3", with world ranks in a subgroup.
    func describe(peers: [Int]) -> String {
        let list = peers.map { isWorld ? "\($0)" : "\($0) (world rank \(worldRanks[$0]))" }.joined(separator: ", ")
        return (peers.count == 1 ? "rank " : "ranks ") + list
    }
}
