import ParmlTensor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// Low-level pieces the threads backend and the rank pool share (their
// clock, `monotonicNanoseconds`, is ParmlTensor's): cache-line-padded
// atomic counters and a "parking lot" (one mutex and one condition variable
// that threads block on after spinning briefly).

/// Polls `done` for up to `nanos` after `start`: spinning for the first
/// `spinning` nanoseconds, then yielding the CPU between polls (so that other
/// runnable threads go first). Returns whether `done` became true.
@inline(__always)
func pollAwake(for nanos: Int, spinning: Int = 20_000, from start: Int = monotonicNanoseconds(), _ done: () -> Bool) -> Bool {
    var i = 0
    while !done() {
        i &+= 1
        if i & 15 == 0 {
            let elapsed = monotonicNanoseconds() - start
            if elapsed >= nanos { return false }
            if elapsed >= spinning { sched_yield() }
        }
    }
    return true
}

/// Online CPUs, at least 1.
package let onlineCPUs: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

/// `count` atomic integers, each on its own pair of cache lines so that
/// ranks spinning on different counters never share a line (the adjacent-line
/// prefetcher pairs lines, hence 128 bytes).
final class PaddedAtomicInts {
    static let stride = 128
    let count: Int
    private let base: UnsafeMutableRawPointer

    init(count: Int) {
        self.count = count
        base = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * Self.stride, alignment: Self.stride)
        for i in 0..<count {
            (base + i * Self.stride).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        }
    }

    deinit {
        for i in 0..<count { _ = pointer(i).deinitialize(count: 1) }
        base.deallocate()
    }

    @inline(__always)
    private func pointer(_ i: Int) -> UnsafeMutablePointer<Atomic<Int>> {
        (base + i * Self.stride).assumingMemoryBound(to: Atomic<Int>.self)
    }

    // Sequentially consistent everywhere: on x86 a load is a plain mov either
    // way, and the store/load pairs with ParkingLot.waiters need SC ordering
    // (see ParkingLot).
    @inline(__always)
    func load(_ i: Int) -> Int { pointer(i).pointee.load(ordering: .sequentiallyConsistent) }

    @inline(__always)
    func store(_ i: Int, _ value: Int) { pointer(i).pointee.store(value, ordering: .sequentiallyConsistent) }
}

/// One mutex and one condition variable (CLOCK_MONOTONIC) that every thread of
/// a world blocks on once spinning has not paid off.
///
/// No lost wake-ups: a waiter increments `waiters`, then re-checks its
/// condition under the mutex before sleeping; a poster first publishes its
/// change (SC store), then reads `waiters` (SC load) and broadcasts under the
/// mutex when it is non-zero. In the SC order either the poster sees the
/// waiter, or the waiter's re-check sees the change.
final class ParkingLot {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    let waiters = Atomic<Int>(0)

    init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    /// With the mutex held: sleeps until a broadcast, a spurious wake-up or
    /// `deadline` (monotonic nanoseconds), whichever comes first.
    func wait(until deadline: Int) {
        var ts = timespec(tv_sec: deadline / 1_000_000_000, tv_nsec: deadline % 1_000_000_000)
        pthread_cond_timedwait(cond, mutex, &ts)
    }

    /// Wakes every sleeper if there is one (cheap when nobody sleeps).
    @inline(__always)
    func wakeIfWaiting() {
        if waiters.load(ordering: .sequentiallyConsistent) > 0 { wakeAll() }
    }

    func wakeAll() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    /// With the mutex held.
    func broadcastLocked() { pthread_cond_broadcast(cond) }
}
