import ParmlTensor

/// Sums chunk gradients along the ChunkTree as they arrive, in chunk order,
/// keeping only the nodes still waiting for a sibling (at most height + 1).
///
/// A rank that owns chunks [a, b) pushes leaves a, a+1, ..., b−1; whenever
/// the top node and the one below it are the two children of a node whose
/// span lies inside [a, b), they are replaced by that node (left += right,
/// the addition `ChunkTree` defines); a left child whose right sibling is
/// empty is promoted unchanged. When the last leaf is in, the stack holds
/// exactly `tree.cover(a..<b)`, left to right, with the bits a recursive
/// evaluation of each node gives. Buffers are recycled: after the first
/// step, pushing allocates nothing.
final class TreeAccumulator {
    private(set) var tree = ChunkTree(chunks: 1)
    private var owned = 0..<0
    private var width = 0
    private(set) var stack: [(node: ChunkTree.Node, buffer: Tensor)] = []
    private var free: [Tensor] = []
    private var allocated = 0

    init() {
        stack.reserveCapacity(64)
        free.reserveCapacity(64)
    }

    /// Bytes of the buffers held (scratch memory).
    var bytes: Int { allocated * width * MemoryLayout<Float>.stride }

    /// Starts a step: chunks `owned` of `tree`, each leaf `width` floats.
    func start(tree: ChunkTree, owned: Range<Int>, width: Int) throws {
        while let top = stack.popLast() { free.append(top.buffer) }
        if width != self.width {
            for t in free where t.count < width { try t.resize(Shape(width)) }
            self.width = width
        }
        self.tree = tree
        self.owned = owned
    }

    /// A buffer of `width` floats for the next leaf; fill it, then `push` it.
    func leafBuffer() throws -> Tensor {
        if let t = free.popLast() {
            if t.count != width { try t.resize(Shape(width)) }
            return t
        }
        allocated += 1
        return try Tensor(shape: Shape(width))
    }

    /// Adds leaf `chunk` whose gradient is at `source` (`width` floats,
    /// left as it is). A right child whose left sibling waits on top of the
    /// stack is added straight into the sibling's buffer: the sum has the
    /// bits of left + right either way, and the leaf's copy out of the
    /// arena (a read and a write of the gradient) is saved. Otherwise the
    /// gradient is copied into a leaf buffer and pushed.
    func push(chunk: Int, from source: UnsafePointer<Float>) throws {
        let parent = ChunkTree.Node(level: 1, index: chunk / 2)
        if chunk % 2 == 1, tree.height > 0, inside(parent), let top = stack.last,
            top.node == ChunkTree.Node(level: 0, index: chunk - 1)
        {
            Kernels.addInPlace(top.buffer.data, source, count: width)
            stack[stack.count - 1] = (parent, top.buffer)
            collapse()
            return
        }
        let leaf = try leafBuffer()
        leaf.data.update(from: source, count: width)
        push(chunk: chunk, buffer: leaf)
    }

    /// Adds leaf `chunk` (its gradient in `buffer`, from `leafBuffer`).
    func push(chunk: Int, buffer: Tensor) {
        stack.append((ChunkTree.Node(level: 0, index: chunk), buffer))
        collapse()
    }

    /// Merges the top of the stack into its parent while the tree allows.
    private func collapse() {
        while let top = stack.last {
            let n = top.node
            let parent = ChunkTree.Node(level: n.level + 1, index: n.index / 2)
            guard n.level < tree.height, inside(parent) else { return }
            if n.index % 2 == 1 {
                // A right child: its left sibling is just below it.
                guard stack.count >= 2 else { return }
                let right = stack.removeLast()
                let left = stack.removeLast()
                Kernels.addInPlace(left.buffer.data, right.buffer.data, count: width)
                free.append(right.buffer)
                stack.append((parent, left.buffer))
            } else if tree.children(parent).right == nil {
                stack[stack.count - 1] = (parent, top.buffer)
            } else {
                return
            }
        }
    }

    private func inside(_ node: ChunkTree.Node) -> Bool {
        let s = tree.span(node)
        return !s.isEmpty && s.lowerBound >= owned.lowerBound && s.upperBound <= owned.upperBound
    }
}
