import ParmlTensor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a wait ended with.
enum WaitOutcome {
    case ready
    case aborted
    case timedOut
}

/// The state every group of one threads world shares: the watchdog deadline,
/// the abort flag and reason, the parking lot that blocked ranks sleep on,
/// and the tuning of waits and chunking. An abort anywhere in the world wakes
/// every sleeper of every group, because they all sleep on this one lot.
///
/// `@unchecked Sendable`: the mutable state (`reason`) is only touched with
/// the parking lot's mutex held; everything else is immutable or atomic.
final class WorldCore: @unchecked Sendable {
    let name: String
    let size: Int
    let timeoutSeconds: Double
    let timeoutNanos: Int
    /// Busy-wait this long (pure spinning), then yield the CPU between checks
    /// for `yieldNanos` more, then sleep on the parking lot.
    let spinNanos: Int
    let yieldNanos: Int
    /// Elements of one rank's shard reduced and copied as one piece (it stays
    /// in cache between its reduction and its copies); a multiple of 16.
    let pieceElements: Int
    let lot = ParkingLot()
    private let abortedFlag = Atomic<Bool>(false)
    private var reason: String?

    init(name: String, size: Int, timeout: Double, pieceElements: Int) {
        self.name = name
        self.size = size
        timeoutSeconds = timeout
        timeoutNanos = Int(min(timeout, 1e9) * 1e9)
        self.pieceElements = max(16, pieceElements & ~15)
        (spinNanos, yieldNanos) = rankWaitWindows(ranks: size, cpus: onlineCPUs)
    }

    @inline(__always)
    var isAborted: Bool { abortedFlag.load(ordering: .sequentiallyConsistent) }

    var abortReason: String? {
        lot.lock()
        defer { lot.unlock() }
        return reason
    }

    /// Marks the world failed and wakes every sleeper. The first reason is
    /// kept; returns whether this call was the first.
    @discardableResult
    func abort(reason: String) -> Bool {
        lot.lock()
        let first = self.reason == nil
        if first { self.reason = reason }
        abortedFlag.store(true, ordering: .sequentiallyConsistent)
        lot.broadcastLocked()
        lot.unlock()
        return first
    }

    /// Waits until `ready()` holds, the world is aborted, or the watchdog
    /// deadline (`timeout` after the wait began) passes. `ready` must only
    /// read state that its poster changes before calling `lot.wakeIfWaiting()`.
    @inline(__always)
    func wait(_ ready: () -> Bool) -> WaitOutcome {
        if ready() { return .ready }
        return waitSlow(ready)
    }

    @inline(never)
    func waitSlow(_ ready: () -> Bool) -> WaitOutcome {
        let start = monotonicNanoseconds()
        // A watchdog shorter than the polling still decides.
        let polled = pollAwake(for: min(spinNanos + yieldNanos, timeoutNanos), spinning: spinNanos, from: start) {
            ready() || abortedFlag.load(ordering: .acquiring)
        }
        if polled { return ready() ? .ready : .aborted }
        let deadline = start + timeoutNanos
        lot.lock()
        lot.waiters.add(1, ordering: .sequentiallyConsistent)
        var outcome = WaitOutcome.timedOut
        while true {
            if abortedFlag.load(ordering: .sequentiallyConsistent) {
                outcome = .aborted
                break
            }
            if ready() {
                outcome = .ready
                break
            }
            if monotonicNanoseconds() >= deadline { break }
            lot.wait(until: deadline)
        }
        lot.waiters.subtract(1, ordering: .sequentiallyConsistent)
        lot.unlock()
        return outcome
    }
}

/// How long a waiting rank of a world of `ranks` threads on `cpus` CPUs
/// spins, then yields, before it sleeps on the world's parking lot. A CPU
/// per rank: stay awake through waits up to 100 ms (spinning, then yielding
/// so that other threads of the host can run). Waking a thread that slept
/// took 0.4-4 ms on this VM (pipeline traces), as much as a micro-batch's
/// work, while a waiting rank's CPU is idle anyway. More ranks than CPUs
/// (tests run 4 ranks on 2 cores): a spinning rank steals the CPU that the
/// rank it waits for needs, so yield almost at once. The strategy advisor's
/// pipeline replay uses the same windows.
package func rankWaitWindows(ranks: Int, cpus: Int) -> (spinNanos: Int, yieldNanos: Int) {
    ranks <= cpus ? (20_000, 100_000_000) : (1_000, 30_000)
}
