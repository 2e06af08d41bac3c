import _CParmlKernels

/// parml's own persistent threads for the work inside one rank: the large
/// matrix products (`ProductThreads`) and the element-wise loops around them.
/// One pool per process (pml_pool.c); `BLAS.threads` sets its size.
///
/// Every caller cuts its work by the problem's shape into parts whose
/// arithmetic does not depend on the thread that runs them, so the bits of a
/// result never depend on the thread count or on timing: a caller that finds
/// the pool busy (another rank, or a part that asks for it again) runs the
/// same parts itself, one after another.
public enum WorkerPool {
    /// Threads that share a job, the caller included.
    public static var threads: Int { Int(pml_pool_threads()) }

    /// Sets the threads that share a job (1...64); the missing workers start
    /// once and persist. Returns the count in effect.
    @discardableResult
    public static func setThreads(_ n: Int) -> Int { Int(pml_pool_set_threads(Int32(clamping: max(1, min(n, 64))))) }

    /// Runs `body(p)` for every p in 0..<parts, on the caller and the pool's
    /// idle workers, and returns when all are done. No allocation: the
    /// closure stays on the caller's stack while the workers run it.
    @inline(__always)
    public static func run(parts: Int, _ body: (Int) -> Void) {
        if parts <= 1 || pml_pool_threads() == 1 {
            for p in 0..<max(parts, 0) { body(p) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var task = escapable
            withUnsafeMutablePointer(to: &task) { ctx in
                pml_pool_run(parts, { raw, part in
                    raw!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(part))
                }, ctx)
            }
        }
    }

    /// Element-wise loops: cuts 0..<count into one range per thread, each at
    /// least `grain` elements and a multiple of `alignment` (16: the widest
    /// vector) except the last, and runs `body` on each. Below 2 × grain it
    /// runs `body(0..<count)` on the caller. Only for loops whose every
    /// element's result is computed alone (a range's bounds change nothing
    /// but which thread runs it).
    @inline(__always)
    public static func forRanges(count: Int, grain: Int, alignment: Int = 16, _ body: (Range<Int>) -> Void) {
        forParts(count: count, grain: grain, alignment: alignment) { _, r in body(r) }
    }

    /// `forRanges` that also passes the range's part index, below
    /// `partLimit(count:grain:)`: a part's own scratch space.
    @inline(__always)
    public static func forParts(count: Int, grain: Int, alignment: Int = 16, _ body: (_ part: Int, Range<Int>) -> Void) {
        let parts = partLimit(count: count, grain: grain)
        if parts <= 1 {
            if count > 0 { body(0, 0..<count) }
            return
        }
        let a = max(alignment, 1)
        let per = ((count + parts - 1) / parts + a - 1) / a * a
        run(parts: parts) { p in
            let lo = min(p * per, count), hi = min(lo + per, count)
            if lo < hi { body(p, lo..<hi) }
        }
    }

    /// The parts `forParts` cuts `count` into: the threads, fewer when a part
    /// would hold under `grain` elements, at least 1.
    @inline(__always)
    public static func partLimit(count: Int, grain: Int) -> Int {
        max(1, min(Int(pml_pool_threads()), count / max(grain, 1)))
    }
}
