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
///
/// With one data rank the rank's chunks are the whole tree and the root's
/// sum is wanted in the gradient arena: given its address (`start`'s
/// `root`), the addition that forms the root writes there, instead of into
/// a buffer that is then copied out (a read and a write of the gradient).
final class TreeAccumulator {
    private(set) var tree = ChunkTree(chunks: 1)
    private var owned = 0..<0
    private var width = 0
    private var root: UnsafeMutablePointer<Float>?
    /// The cover so far, left to right; a nil buffer: the node's sum is at
    /// `root` (`values(at:)` reads either).
    private(set) var stack: [(node: ChunkTree.Node, buffer: Tensor?)] = []
    private var free: [Tensor] = []
    private var allocated = 0

    init() {
        stack.reserveCapacity(64)
        free.reserveCapacity(64)
    }

    /// Bytes of the buffers held (scratch memory).
    var bytes: Int { allocated * width * MemoryLayout<Float>.stride }

    /// Starts a step: chunks `owned` of `tree`, each leaf `width` floats;
    /// the root's sum written to `root` (`width` floats) where `owned` is
    /// every chunk, else kept in a buffer like every other node.
    func start(tree: ChunkTree, owned: Range<Int>, width: Int, root: UnsafeMutablePointer<Float>? = nil) throws {
        while let top = stack.popLast() { top.buffer.map { free.append($0) } }
        if width != self.width {
            for t in free where t.count < width { try t.resize(Shape(width)) }
            self.width = width
        }
        self.tree = tree
        self.owned = owned
        self.root = owned == 0..<tree.chunks ? root : nil
    }

    /// The sum of stack entry `i`'s node (`width` floats).
    func values(at i: Int) -> UnsafePointer<Float> {
        guard let buffer = stack[i].buffer else { return UnsafePointer(root!) }
        return UnsafePointer(buffer.data)
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
    ///
    /// Where the root goes to `root`: a lone chunk is the root, copied
    /// there (nothing to do when `source` is `root`, the arena); a right
    /// child whose parent is the root is added to it in place, source + left,
    /// the same float as left + source (IEEE 754 addition commutes).
    func push(chunk: Int, from source: UnsafePointer<Float>) throws {
        if let left = waitingSibling(of: chunk) {
            let parent = ChunkTree.Node(level: 1, index: chunk / 2)
            if let root, parent == tree.root {
                place(source, in: root)
                Kernels.addInPlace(root, left.data, count: width)
                free.append(left)
                stack[stack.count - 1] = (parent, nil)
                return
            }
            Kernels.addInPlace(left.data, source, count: width)
            stack[stack.count - 1] = (parent, left)
            collapse()
            return
        }
        if let root, tree.height == 0 {
            place(source, in: root)
            stack.append((tree.root, nil))
            return
        }
        let leaf = try leafBuffer()
        leaf.data.update(from: source, count: width)
        push(chunk: chunk, buffer: leaf)
    }

    /// Whether `push(chunk:from:)` would copy this chunk's gradient into a
    /// leaf buffer: neither added into a left sibling waiting on top of the
    /// stack nor the root at `root`. The caller may then have backward
    /// write the gradient into a `leafBuffer` and `push(chunk:buffer:)` it,
    /// which gives the same bits without the copy.
    func keepsLeaf(chunk: Int) -> Bool {
        waitingSibling(of: chunk) == nil && !(root != nil && tree.height == 0)
    }

    /// The buffer of the left sibling on top of the stack that leaf
    /// `chunk` is added into, when `chunk` is a right child whose parent
    /// lies inside the owned chunks.
    private func waitingSibling(of chunk: Int) -> Tensor? {
        guard chunk % 2 == 1, tree.height > 0, inside(ChunkTree.Node(level: 1, index: chunk / 2)), let top = stack.last,
            top.node == ChunkTree.Node(level: 0, index: chunk - 1)
        else { return nil }
        return top.buffer
    }

    /// Takes back a `leafBuffer` that was not pushed (its backward failed).
    func recycle(_ leaf: Tensor) { free.append(leaf) }

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
                // A right child: its left sibling is just below it. Only
                // the root is ever at `root`, so both are in buffers.
                guard stack.count >= 2, let right = stack[stack.count - 1].buffer, let left = stack[stack.count - 2].buffer else { return }
                stack.removeLast(2)
                free.append(right)
                if let root, parent == tree.root {
                    Kernels.add(left.data, right.data, root, count: width)
                    free.append(left)
                    stack.append((parent, nil))
                } else {
                    Kernels.addInPlace(left.data, right.data, count: width)
                    stack.append((parent, left))
                }
            } else if tree.children(parent).right == nil {
                stack[stack.count - 1] = (parent, top.buffer)
            } else {
                return
            }
        }
    }

    /// `source`'s gradient at `root`: copied, unless backward wrote it there.
    private func place(_ source: UnsafePointer<Float>, in root: UnsafeMutablePointer<Float>) {
        if source != UnsafePointer(root) { root.update(from: source, count: width) }
    }

    private func inside(_ node: ChunkTree.Node) -> Bool {
        let s = tree.span(node)
        return !s.isEmpty && s.lowerBound >= owned.lowerBound && s.upperBound <= owned.upperBound
    }
}
