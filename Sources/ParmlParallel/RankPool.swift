import ParmlTensor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Persistent threads that run one closure on every rank: ranks 1..<size on
/// worker threads created once, rank 0 on the calling thread.
///
/// ```swift
/// let pool = try RankPool(size: 4)
/// let step: (Int) throws -> Void = { rank in ... }   // build once, reuse
/// try pool.run(world: world, step)
/// ```
///
/// Failure handling (`run`):
/// - A rank whose body throws aborts `world` at once with "rank N failed:
///   <error>", so peers blocked in collectives throw instead of waiting.
/// - `run` returns when every rank has returned, and then throws one error:
///   the first (in time) error that is not `.communication`, with the same
///   case and "rank N: " prefixed, else the first `.communication` error
///   (which already names the rank, the collective and the original reason).
///   A non-`ParmlError` becomes `.internal("rank N: ...")`.
/// - With a world, `run` never waits forever: once the world is aborted it
///   waits at most `world.timeout` more for the remaining ranks; if rank 0
///   returns and others are still running `world.timeout` later, it aborts
///   the world itself (naming them) and then waits `world.timeout` more. A
///   rank still running after that is left alone on its thread (it is in
///   user code; it exits when its body returns); `run` throws, naming it,
///   and the pool refuses every later `run` with `ParmlError.state`.
///   Without a world there is no deadline.
/// - A world that was aborted before (an earlier failed run) makes `run`
///   throw `.communication` at once: an aborted world stays aborted.
///
/// The body is `@escaping` on purpose: a stuck rank may still be running it
/// after `run` has thrown, so it must not live on the caller's stack. Build
/// it once and pass the same closure every step: then `run` allocates
/// nothing in steady state (an inline closure literal with captures costs
/// one small allocation per call).
///
/// Thread safety: one `run` at a time (a nested or concurrent call throws
/// `.state`). `deinit` stops and joins the workers; a worker stuck in a body
/// is detached instead.
public final class RankPool: @unchecked Sendable {
    // @unchecked Sendable: `threads` is written in init and deinit only;
    // the state the workers share lives in PoolShared behind its mutex.
    public let size: Int
    private let shared: PoolShared
    private var threads: [pthread_t] = []

    /// Starts `size - 1` worker threads (ranks 1..<size).
    public init(size: Int) throws {
        guard size >= 1 && size <= 4096 else {
            throw ParmlError.invalidArgument("RankPool: size must be in 1...4096, got \(size)")
        }
        self.size = size
        shared = PoolShared(size: size)
        for r in 1..<max(size, 1) {
            let context = Unmanaged.passRetained(WorkerContext(shared: shared, rank: r))
            var thread = pthread_t()
            let rc = pthread_create(
                &thread, nil,
                { arg in
                    let context = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
                    context.shared.workerLoop(rank: context.rank)
                    return nil
                }, context.toOpaque())
            if rc != 0 {
                context.release()
                stopWorkers()
                throw ParmlError.outOfMemory("RankPool: could not start the thread of rank \(r) (pthread_create: \(rc))")
            }
            threads.append(thread)
        }
    }

    deinit { stopWorkers() }

    private func stopWorkers() {
        let busy = shared.stop()
        for (i, thread) in threads.enumerated() {
            if busy[i + 1] { pthread_detach(thread) } else { pthread_join(thread, nil) }
        }
        threads.removeAll()
    }

    /// Runs `body(rank)` on every rank at once and returns when all have
    /// returned; throws as described on the type. `world`, when given, must
    /// have `size` ranks; it is aborted when a rank fails.
    public func run(world: ThreadsWorld?, _ body: @escaping (Int) throws -> Void) throws {
        if let world, world.size != size {
            throw ParmlError.invalidArgument("RankPool.run: the world has \(world.size) ranks, the pool \(size)")
        }
        if let world, let reason = world.abortReason {
            throw ParmlError.communication("RankPool.run: world \(world.name) was aborted earlier: \(reason)")
        }
        try shared.start(body, world: world)
        var failure: (any Error)?
        do {
            try body(0)
        } catch {
            failure = error
            world?.abort(reason: "rank 0 failed: \(error)")
        }
        if let error = shared.finish(rank0: failure, world: world) { throw error }
    }
}

/// What a worker thread is handed at creation (retained until it exits).
private final class WorkerContext {
    let shared: PoolShared
    let rank: Int
    init(shared: PoolShared, rank: Int) {
        self.shared = shared
        self.rank = rank
    }
}

/// The state the host thread and the workers share.
///
/// `@unchecked Sendable`: every stored `var` is read and written with
/// `mutex` held; `generationSignal` and `remaining` are atomics that mirror
/// guarded values for lock-free spinning. Workers hold a strong reference,
/// so a detached (stuck) worker never outlives this object.
final class PoolShared: @unchecked Sendable {
    let size: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let startCond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let doneCond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Spinning pays only when every rank has a CPU of its own. 5 ms (spinning,
    /// then yielding): a host's gap between two steps is usually shorter, and
    /// waking a thread that slept cost 0.4-4 ms on this VM (pipeline traces).
    private let spinNanos: Int

    private var generation = 0
    private let generationSignal = Atomic<Int>(0)
    private var stopping = false
    private var running = false
    private var body: ((Int) throws -> Void)?
    private var world: ThreadsWorld?
    private var errors: [(any Error)?]
    private var errorOrder: [Int]
    private var failures = 0
    private var busy: [Bool]
    /// Workers still running the current generation (written with the mutex held).
    private let remaining = Atomic<Int>(0)
    /// Ranks that did not return from a run in time; the pool is unusable when non-empty.
    private var stuck: [Int] = []
    /// Stuck ranks still inside their body, counted in `AbandonedRanks`.
    private var abandoned: [Bool]

    init(size: Int) {
        self.size = size
        errors = Array(repeating: nil, count: size)
        errorOrder = Array(repeating: 0, count: size)
        busy = Array(repeating: false, count: size)
        abandoned = Array(repeating: false, count: size)
        spinNanos = size <= onlineCPUs ? 5_000_000 : 0
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(startCond, &attr)
        pthread_cond_init(doneCond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(startCond)
        pthread_cond_destroy(doneCond)
        pthread_mutex_destroy(mutex)
        startCond.deallocate()
        doneCond.deallocate()
        mutex.deallocate()
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    private func timedWait(_ cond: UnsafeMutablePointer<pthread_cond_t>, until deadline: Int) {
        var ts = timespec(tv_sec: deadline / 1_000_000_000, tv_nsec: deadline % 1_000_000_000)
        pthread_cond_timedwait(cond, mutex, &ts)
    }

    /// Asks every worker to exit; returns which ranks are still inside a body.
    func stop() -> [Bool] {
        lock()
        stopping = true
        generationSignal.add(1, ordering: .sequentiallyConsistent)
        pthread_cond_broadcast(startCond)
        let b = busy
        unlock()
        return b
    }

    // MARK: - Host side

    func start(_ body: @escaping (Int) throws -> Void, world: ThreadsWorld?) throws {
        lock()
        defer { unlock() }
        if !stuck.isEmpty {
            let list = stuck.map(String.init).joined(separator: ", ")
            let still = stuck.contains { busy[$0] }
            throw ParmlError.state(
                "a rank of this pool is \(still ? "still stuck" : "was stuck") in an earlier run "
                    + "(rank \(list) did not return in time); create a new RankPool")
        }
        if running { throw ParmlError.state("RankPool.run: a run is already in progress on this pool") }
        running = true
        self.body = body
        self.world = world
        for i in 0..<size { errors[i] = nil }
        failures = 0
        remaining.store(size - 1, ordering: .sequentiallyConsistent)
        generation += 1
        generationSignal.store(generation, ordering: .sequentiallyConsistent)
        pthread_cond_broadcast(startCond)
    }

    private func record(_ rank: Int, _ error: any Error) {
        errors[rank] = error
        errorOrder[rank] = failures
        failures += 1
    }

    /// Waits for the workers (see RankPool for the deadlines) and returns the error to throw.
    func finish(rank0: (any Error)?, world: ThreadsWorld?) -> (any Error)? {
        // Workers usually finish within microseconds of rank 0 (the last
        // thing a step does is a collective): spin before sleeping.
        if spinNanos > 0 { _ = pollAwake(for: spinNanos) { remaining.load(ordering: .sequentiallyConsistent) == 0 } }
        lock()
        if let rank0 { record(0, rank0) }
        let timeout = world.map { Int(min($0.timeout, 1e9) * 1e9) } ?? 0
        var finishDeadline = world == nil ? Int.max : monotonicNanoseconds() + timeout
        var abortDeadline = Int.max
        var timedOut = false
        var poolAbort: String?
        while remaining.load(ordering: .sequentiallyConsistent) > 0 {
            let now = monotonicNanoseconds()
            if let world, world.isAborted {
                if abortDeadline == Int.max { abortDeadline = now + timeout }
                if now >= abortDeadline {
                    timedOut = true
                    break
                }
            } else if let world, now >= finishDeadline {
                // Rank 0 returned long ago and some rank has not: a hang
                // outside any collective. Abort so its collectives throw.
                let late = (1..<size).filter { busy[$0] }.map(String.init).joined(separator: ", ")
                let reason = "\(world.name): rank \(late) did not return from RankPool.run within \(world.timeout) s after rank 0 did"
                poolAbort = reason
                unlock()
                world.abort(reason: reason)
                lock()
                finishDeadline = Int.max
                continue
            }
            // Poll every 10 ms: an abort by a worker does not signal doneCond.
            timedWait(doneCond, until: min(now + 10_000_000, min(abortDeadline, finishDeadline)))
        }
        if timedOut {
            stuck = (1..<size).filter { busy[$0] }
            for r in stuck where !abandoned[r] {
                abandoned[r] = true
                AbandonedRanks.started()
            }
        }
        let stuckNow = stuck
        var first: (rank: Int, order: Int)?
        var firstCommunication: (rank: Int, order: Int)?
        for r in 0..<size {
            guard let e = errors[r] else { continue }
            let isCommunication: Bool
            if case .communication? = e as? ParmlError { isCommunication = true } else { isCommunication = false }
            if isCommunication {
                if firstCommunication == nil || errorOrder[r] < firstCommunication!.order { firstCommunication = (r, errorOrder[r]) }
            } else if first == nil || errorOrder[r] < first!.order {
                first = (r, errorOrder[r])
            }
        }
        var result: ParmlError?
        if let first {
            result = Self.prefixed(errors[first.rank]!, rank: first.rank)
        } else if let firstCommunication {
            let e = errors[firstCommunication.rank]!
            result = (e as? ParmlError) ?? .communication("\(e)")
        }
        if result == nil, let poolAbort { result = .communication(poolAbort) }
        body = nil
        self.world = nil
        running = false
        for i in 0..<size { errors[i] = nil }
        unlock()
        if !stuckNow.isEmpty, let world {
            let list = stuckNow.map(String.init).joined(separator: ", ")
            let note = "rank \(list) did not return within \(world.timeout) s after the world was aborted "
                + "(its thread is left running; this RankPool can no longer be used)"
            if let r = result { return Self.appending(r, "; " + note) }
            return ParmlError.communication("\(world.name): \(note): \(world.abortReason ?? "")")
        }
        return result
    }

    static func prefixed(_ error: any Error, rank: Int) -> ParmlError {
        guard let e = error as? ParmlError else { return .internal("rank \(rank): \(error)") }
        return mapMessage(e) { "rank \(rank): \($0)" }
    }

    static func appending(_ e: ParmlError, _ text: String) -> ParmlError { mapMessage(e) { $0 + text } }

    static func mapMessage(_ e: ParmlError, _ f: (String) -> String) -> ParmlError {
        switch e {
        case .invalidArgument(let m): return .invalidArgument(f(m))
        case .shape(let m): return .shape(f(m))
        case .unsupported(let m): return .unsupported(f(m))
        case .outOfMemory(let m): return .outOfMemory(f(m))
        case .io(let m): return .io(f(m))
        case .format(let m): return .format(f(m))
        case .state(let m): return .state(f(m))
        case .blas(let m): return .blas(f(m))
        case .cancelled(let m): return .cancelled(f(m))
        case .internal(let m): return .internal(f(m))
        case .communication(let m): return .communication(f(m))
        case .nonFinite(let m): return .nonFinite(f(m))
        case .authMissing(let m): return .authMissing(f(m))
        case .authKey(let m): return .authKey(f(m))
        case .authFailed(let m): return .authFailed(f(m))
        }
    }

    // MARK: - Worker side

    func workerLoop(rank: Int) {
        var seen = 0
        lock()
        while true {
            if generation == seen && !stopping && spinNanos > 0 {
                // Back-to-back runs (training steps): catch the next one without sleeping.
                unlock()
                _ = pollAwake(for: spinNanos) { generationSignal.load(ordering: .sequentiallyConsistent) != seen }
                lock()
            }
            while generation == seen && !stopping { pthread_cond_wait(startCond, mutex) }
            if stopping { break }
            seen = generation
            // A worker that wakes only after `finish` gave up on this run
            // (its deadline passed before the worker was scheduled) finds
            // no body: that run is over, so it waits for the next one.
            guard let body = self.body else { continue }
            let world = self.world
            busy[rank] = true
            unlock()
            var failure: (any Error)?
            do {
                try body(rank)
            } catch {
                failure = error
                world?.abort(reason: "rank \(rank) failed: \(error)")
            }
            lock()
            busy[rank] = false
            if abandoned[rank] {
                abandoned[rank] = false
                AbandonedRanks.returned()
            }
            if seen == generation {
                if let failure { record(rank, failure) }
                if remaining.subtract(1, ordering: .sequentiallyConsistent).newValue == 0 {
                    pthread_cond_signal(doneCond)
                }
            }
        }
        unlock()
    }
}

/// Ranks a pool gave up on that are still running on their threads,
/// process-wide. Such a rank may be inside OpenBLAS when the host process
/// exits, and OpenBLAS's exit-time teardown then pulls its buffers from
/// under it (a crash at exit, seen under ThreadSanitizer). So the first
/// abandoned rank registers an exit handler that waits, at most
/// `exitWaitSeconds`, for every abandoned rank to return. It runs before
/// the libraries' destructors (glibc runs atexit handlers first), and an
/// abandoned rank returns soon after it wakes: ranks check for an aborted
/// world before every layer.
public enum AbandonedRanks {
    private static let running = Atomic<Int>(0)
    private static let registered = Atomic<Bool>(false)
    /// The longest an exiting process waits for its abandoned ranks.
    public static let exitWaitSeconds = 10.0

    /// Abandoned ranks still running now.
    public static var count: Int { running.load(ordering: .sequentiallyConsistent) }

    static func started() {
        running.add(1, ordering: .sequentiallyConsistent)
        if !registered.exchange(true, ordering: .sequentiallyConsistent) {
            atexit { AbandonedRanks.waitForAll(seconds: AbandonedRanks.exitWaitSeconds) }
        }
    }

    static func returned() {
        running.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Waits until no abandoned rank is running or `seconds` have passed;
    /// returns whether none is running.
    @discardableResult
    public static func waitForAll(seconds: Double) -> Bool {
        let deadline = monotonicNanoseconds() + Int(seconds * 1e9)
        while count > 0 {
            if monotonicNanoseconds() >= deadline { return false }
            usleep(1000)
        }
        return true
    }
}
