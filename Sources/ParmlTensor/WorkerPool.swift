import _CParmlKernels

/// A piece of work cut into parts for `WorkerPool.run`: `run(part:)` is
/// called once for each part, on any thread, several at once.
///
/// A struct rather than a closure: handing a closure to another thread
/// needs an escaping closure (a heap context per call), and a step must not
/// allocate; a struct is passed by a pointer to the caller's stack.
public protocol WorkerTask {
    func run(part: Int)
}

/// Work cut into ranges by `WorkerPool.forRanges`: `run(_:part:)` gets
/// one range and its part index (a part's own scratch space).
public protocol RangeTask {
    func run(_ range: Range<Int>, part: Int)
}

/// parml's own persistent threads for the work inside one rank: the large
/// matrix products (`ProductThreads`) and the element-wise loops around them.
/// One pool per process (pml_pool.c); `BLAS.threads` sets its size.
///
/// Every caller cuts its work by the problem's shape into parts whose
/// arithmetic does not depend on the thread that runs them (`BalancedRowCut`
/// moves a product's cut with the threads' paces, only along boundaries that
/// give the uncut product's bits), so the bits of a result never depend on
/// the thread count or on timing: a caller that finds
/// the pool busy (another rank, or a part that asks for it again) runs the
/// same parts itself, one after another.
public enum WorkerPool {
    /// Threads that share a job, the caller included.
    public static var threads: Int { Int(pml_pool_threads()) }

    /// The CPUs this process may run on (its affinity mask: mpirun's binding
    /// or taskset narrow it), as a flag per CPU 0..<`cpus`; nil where the
    /// mask cannot be read.
    public static func allowedCPUs(_ cpus: Int) -> [Bool]? {
        var mask = [UInt8](repeating: 0, count: max(cpus, 0))
        guard pml_allowed_cpus(&mask, Int32(clamping: mask.count)) > 0 else { return nil }
        return mask.map { $0 != 0 }
    }

    /// Sets the threads that share a job (1...64); the missing workers start
    /// once and persist. Returns the count in effect.
    @discardableResult
    public static func setThreads(_ n: Int) -> Int { Int(pml_pool_set_threads(Int32(clamping: max(1, min(n, 64))))) }

    /// Runs `task.run(part: p)` for every p in 0..<parts, on the caller and
    /// the pool's idle workers, and returns when all are done. No allocation:
    /// the workers reach the task through a pointer to the caller's stack.
    @inline(__always)
    public static func run<T: WorkerTask>(parts: Int, _ task: T) {
        if parts <= 1 || pml_pool_threads() == 1 {
            for p in 0..<max(parts, 0) { task.run(part: p) }
            return
        }
        withUnsafePointer(to: task) { tp in
            // One word (the pointer) fits an existential's inline buffer:
            // the erased task is on the stack too.
            var erased: any ErasedTask = TaskPointer(task: tp)
            withUnsafeMutablePointer(to: &erased) { ctx in
                pml_pool_run(parts, { raw, part in
                    raw!.assumingMemoryBound(to: (any ErasedTask).self).pointee.run(part: Int(part))
                }, ctx)
            }
        }
    }

    /// Cuts 0..<count into one range per thread, each at least `grain`
    /// elements and a multiple of `alignment` (16: the widest vector) except
    /// the last, and runs `task` on each. Below 2 × grain it runs the whole
    /// range on the caller. Only for work whose every element's result is
    /// computed alone (a range's bounds change nothing but which thread runs it).
    @inline(__always)
    public static func forRanges<T: RangeTask>(count: Int, grain: Int, alignment: Int = 16, _ task: T) {
        forRanges(count: count, grain: grain, alignment: alignment, parts: partLimit(count: count, grain: grain), task)
    }

    /// The same in `parts` ranges, for a caller that sized per-part state by
    /// that count (the pool's size may change between two reads of it).
    @inline(__always)
    public static func forRanges<T: RangeTask>(count: Int, grain: Int, alignment: Int = 16, parts: Int, _ task: T) {
        if parts <= 1 {
            if count > 0 { task.run(0..<count, part: 0) }
            return
        }
        let a = max(alignment, 1)
        let per = ((count + parts - 1) / parts + a - 1) / a * a
        run(parts: parts, Ranges(task: task, count: count, per: per))
    }

    /// The parts `forRanges` cuts `count` into: the threads, fewer when a part
    /// would hold under `grain` elements, at least 1.
    @inline(__always)
    public static func partLimit(count: Int, grain: Int) -> Int {
        partLimit(count: count, grain: grain, threads: Int(pml_pool_threads()))
    }

    /// `partLimit` for a given thread count (the pool's size is one setting
    /// per process, which any trainer may change meanwhile).
    @inline(__always)
    public static func partLimit(count: Int, grain: Int, threads: Int) -> Int {
        max(1, min(threads, count / max(grain, 1)))
    }
}

/// `forRanges`'s parts: part p is [p·per, (p+1)·per) ∩ [0, count).
private struct Ranges<T: RangeTask>: WorkerTask {
    let task: T
    let count, per: Int

    @inline(__always)
    func run(part p: Int) {
        let lo = min(p * per, count), hi = min(lo + per, count)
        if lo < hi { task.run(lo..<hi, part: p) }
    }
}

protocol ErasedTask {
    func run(part: Int)
}

/// A task on the caller's stack, seen through an existential by the C trampoline.
private struct TaskPointer<T: WorkerTask>: ErasedTask {
    let task: UnsafePointer<T>
    @inline(__always) func run(part: Int) { task.pointee.run(part: part) }
}
