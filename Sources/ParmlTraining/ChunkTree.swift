/// The canonical summation order of deterministic mode.
///
/// A global batch of N samples is cut into k = ⌈N / c⌉ chunks of c samples
/// (the last may be shorter). Each chunk's gradient g_i is computed on its
/// own, and the batch gradient is their sum along a fixed binary tree over
/// chunk indices: node (level ℓ, index j) covers chunks [j·2^ℓ, (j+1)·2^ℓ) ∩
/// [0, k); a leaf is g_i; an inner node is left + right, or just left when
/// its right half is empty. The tree depends on k only, never on how chunks
/// are spread over ranks, so every layout adds the same numbers in the same
/// order: a rank sums the largest nodes that lie inside its chunk range, and
/// only those nodes cross ranks.
struct ChunkTree: Sendable {
    struct Node: Hashable, Sendable {
        let level: Int
        let index: Int
    }

    let chunks: Int
    /// Level of the root: the smallest ℓ with 2^ℓ ≥ chunks.
    let height: Int

    init(chunks: Int) {
        precondition(chunks >= 1)
        self.chunks = chunks
        var h = 0
        while (1 << h) < chunks { h += 1 }
        height = h
    }

    var root: Node { Node(level: height, index: 0) }

    /// The chunks [lo, hi) a node covers, clipped to [0, chunks).
    func span(_ n: Node) -> Range<Int> {
        let lo = n.index << n.level
        return min(lo, chunks)..<min(lo + (1 << n.level), chunks)
    }

    func children(_ n: Node) -> (left: Node, right: Node?) {
        let l = Node(level: n.level - 1, index: 2 * n.index)
        let r = Node(level: n.level - 1, index: 2 * n.index + 1)
        return (l, span(r).isEmpty ? nil : r)
    }

    /// The largest nodes whose spans lie inside `range`, left to right;
    /// together they cover `range` exactly.
    func cover(_ range: Range<Int>) -> [Node] {
        var out: [Node] = []
        func visit(_ n: Node) {
            let s = span(n)
            if s.isEmpty || s.upperBound <= range.lowerBound || s.lowerBound >= range.upperBound { return }
            if s.lowerBound >= range.lowerBound && s.upperBound <= range.upperBound {
                out.append(n)
                return
            }
            let c = children(n)
            visit(c.left)
            if let r = c.right { visit(r) }
        }
        if !range.isEmpty { visit(root) }
        return out
    }
}
