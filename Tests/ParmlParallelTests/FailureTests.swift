import ParmlTensor
import Testing

@testable import ParmlParallel

/// Promise 4: a rank that fails, stalls or calls the wrong collective makes
/// every other rank throw; nothing waits forever.
extension ParallelTests {
@Suite("failures")
struct FailureTests {
    @Test func aRankThatThrowsReleasesPeersBlockedInAllReduce() throws {
        let size = 3
        let world = try ThreadsWorld(size: size, timeout: 2, name: "dp")
        let pool = try RankPool(size: size)
        let outcomes = PerRank<String>(size)
        let start = monotonicNanoseconds()
        var caught: (any Error)?
        do {
            try pool.run(world: world) { r in
                let comm = world.communicator(rank: r)
                let b = FloatBuffer(count: 1000, value: 1)
                try comm.barrier()  // #0
                if r == 1 {
                    sleepMicroseconds(50_000)
                    outcomes[r] = "threw"
                    throw ParmlError.shape("batch has 3 columns, expected 4")
                }
                do {
                    try comm.allReduce(b.pointer, count: 1000, op: .sum)  // #1
                    outcomes[r] = "returned"
                } catch {
                    outcomes[r] = "\(error)"
                    if case ParmlError.communication = error {} else { outcomes[r] = "wrong error: \(error)" }
                    throw error
                }
            }
        } catch { caught = error }
        let elapsed = elapsedSeconds(since: start)
        #expect(elapsed < 1.5)
        #expect(caught as? ParmlError == .shape("rank 1: batch has 3 columns, expected 4"))
        for r in [0, 2] {
            #expect(outcomes[r] == "rank \(r) of dp: allReduce #1 failed: rank 1 failed: batch has 3 columns, expected 4")
        }
        #expect(world.isAborted)
        // The world stays aborted; the pool still works with a new world.
        #expect(throws: ParmlError.self) { try pool.run(world: world) { _ in } }
        let fresh = try ThreadsWorld(size: size, timeout: 2, name: "dp")
        try pool.run(world: fresh) { r in try fresh.communicator(rank: r).barrier() }
    }

    @Test func aRankThatNeverArrivesTimesOutNamingIt() throws {
        let world = try ThreadsWorld(size: 3, timeout: 1, name: "dp")
        let pool = try RankPool(size: 3)
        let outcomes = PerRank<String>(3)
        let start = monotonicNanoseconds()
        var caught: (any Error)?
        do {
            try pool.run(world: world) { r in
                let b = FloatBuffer(count: 10, value: 1)
                if r == 2 { return }  // skips the collective
                do { try world.communicator(rank: r).allReduce(b.pointer, count: 10, op: .sum) } catch {
                    outcomes[r] = "\(error)"
                    throw error
                }
            }
        } catch { caught = error }
        let elapsed = elapsedSeconds(since: start)
        #expect(elapsed >= 0.9 && elapsed < 1.8)
        guard case ParmlError.communication(let m)? = caught as? ParmlError else {
            Issue.record("expected a communication error, got \(String(describing: caught))")
            return
        }
        #expect(m.contains("allReduce #0 timed out after 1.0 s waiting for rank 2"))
        // The rank that timed out first names the culprit; the other one repeats its reason.
        let texts = [outcomes[0] ?? "", outcomes[1] ?? ""]
        #expect(texts.allSatisfy { $0.contains("waiting for rank 2") })
    }

    /// Waiting ranks poll for up to 100 ms before sleeping (WorldCore); a
    /// shorter watchdog must still end the wait at its own deadline, not
    /// when the late rank finally arrives.
    @Test func aWatchdogShorterThanThePollingStillFires() throws {
        let world = try ThreadsWorld(size: 2, timeout: 0.005, name: "dp")
        let pool = try RankPool(size: 2)
        var caught: (any Error)?
        do {
            try pool.run(world: world) { r in
                if r == 1 { sleepMicroseconds(60_000) }
                let b = FloatBuffer(count: 10, value: 1)
                try world.communicator(rank: r).allReduce(b.pointer, count: 10, op: .sum)
            }
        } catch { caught = error }
        let message = (caught as? ParmlError)?.message ?? ""
        #expect(message.contains("rank 0 of dp: allReduce #0 timed out after"), "got: \(message)")
    }

    @Test func aStalledRankCannotHangRunAndThePoolThenRefusesWork() throws {
        let world = try ThreadsWorld(size: 2, timeout: 1, name: "dp")
        let pool = try RankPool(size: 2)
        let start = monotonicNanoseconds()
        var caught: (any Error)?
        do {
            try pool.run(world: world) { r in
                if r == 1 {
                    sleepMicroseconds(3_000_000)  // stuck in user code
                    return
                }
                let b = FloatBuffer(count: 10, value: 1)
                try world.communicator(rank: r).allReduce(b.pointer, count: 10, op: .sum)
            }
        } catch { caught = error }
        let elapsed = elapsedSeconds(since: start)
        #expect(elapsed < 2.5)
        let message = (caught as? ParmlError)?.message ?? ""
        #expect(message.contains("rank 0 of dp: allReduce #0 timed out after 1.0 s waiting for rank 1"))
        #expect(message.contains("rank 1 did not return"))
        do {
            try pool.run(world: try ThreadsWorld(size: 2, timeout: 1)) { _ in }
            Issue.record("the pool accepted a run while rank 1 is stuck")
        } catch let e as ParmlError {
            guard case .state(let m) = e else { Issue.record("expected .state, got \(e)"); return }
            #expect(m.contains("still stuck"))
        }
        // Dropping the pool must not wait for the stuck thread (it is detached).
        let dropStart = monotonicNanoseconds()
        _ = consume pool
        #expect(elapsedSeconds(since: dropStart) < 0.5)
    }

    /// A rank hung in user code outside any collective, while rank 0 has
    /// returned: the pool aborts the world after the timeout, then gives up
    /// on the rank after another.
    @Test func aRankHungOutsideCollectivesIsGivenUpOn() throws {
        let world = try ThreadsWorld(size: 2, timeout: 0.5, name: "dp")
        let pool = try RankPool(size: 2)
        let start = monotonicNanoseconds()
        var caught: (any Error)?
        do {
            try pool.run(world: world) { r in if r == 1 { sleepMicroseconds(2_000_000) } }
        } catch { caught = error }
        let elapsed = elapsedSeconds(since: start)
        #expect(elapsed >= 0.9 && elapsed < 1.5)
        guard case ParmlError.communication(let m)? = caught as? ParmlError else {
            Issue.record("expected a communication error, got \(String(describing: caught))")
            return
        }
        #expect(m.contains("rank 1 did not return from RankPool.run within 0.5 s after rank 0 did"))
        #expect(throws: ParmlError.self) { try pool.run(world: nil) { _ in } }
    }

    /// An abort that lands while ranks are in the middle of a large
    /// allReduce: each rank frees its buffer as soon as its call throws, so
    /// a peer still writing into it would be a use-after-free (caught under
    /// --sanitize=address).
    @Test func abortDuringALargeAllReduceLeavesNoPeerInsideABuffer() throws {
        for attempt in 0..<6 {
            let world = try ThreadsWorld(size: 3, timeout: 5, chunkBytes: 16384)
            let pool = try RankPool(size: 3)
            #expect(throws: ParmlError.self) {
                try pool.run(world: world) { r in
                    let sub = try world.communicator(rank: r).split(color: r == 2 ? 1 : 0, key: 0, name: "pair")
                    if r == 2 {
                        sleepMicroseconds(2_000 * attempt)
                        world.abort(reason: "rank 2 pulls the plug")
                        return
                    }
                    let n = 1 << 20
                    let b = UnsafeMutablePointer<Float>.allocate(capacity: n)
                    b.initialize(repeating: 1, count: n)
                    do {
                        while true { try sub.allReduce(b, count: n, op: .mean) }
                    } catch {
                        b.deallocate()
                        throw error
                    }
                }
            }
        }
    }

    @Test func abortInOneSubgroupReachesARankWaitingInAnother() throws {
        let world = try ThreadsWorld(size: 4, timeout: 5, name: "world")
        let pool = try RankPool(size: 4)
        let outcomes = PerRank<String>(4)
        let start = monotonicNanoseconds()
        #expect(throws: ParmlError.self) {
            try pool.run(world: world) { r in
                let comm = world.communicator(rank: r)
                let sub = try comm.split(color: r % 2, key: r, name: r % 2 == 0 ? "even" : "odd")
                do {
                    switch r {
                    case 0:
                        sleepMicroseconds(100_000)
                        sub.abort(reason: "rank 0 gives up")
                        outcomes[r] = "aborted"
                        return
                    case 1:
                        // Waits in the odd group: rank 3 is not coming.
                        let b = FloatBuffer(count: 100, value: 1)
                        try sub.allReduce(b.pointer, count: 100, op: .sum)
                    case 2: try sub.barrier()  // rank 0 never joins
                    default: try comm.barrier()  // nor does anyone else
                    }
                    outcomes[r] = "returned"
                } catch {
                    outcomes[r] = "\(error)"
                    throw error
                }
            }
        }
        #expect(elapsedSeconds(since: start) < 1.5)
        #expect(outcomes[1] == "rank 0 of odd (world rank 1): allReduce #0 failed: rank 0 gives up")
        #expect(outcomes[2] == "rank 1 of even (world rank 2): barrier #0 failed: rank 0 gives up")
        #expect(outcomes[3] == "rank 3 of world: barrier #1 failed: rank 0 gives up")
    }

    @Test func mismatchedCallsFailOnEveryRankWithoutTouchingMemory() throws {
        let world = try ThreadsWorld(size: 2, timeout: 5)
        let pool = try RankPool(size: 2)
        let outcomes = PerRank<String>(2)
        #expect(throws: ParmlError.self) {
            try pool.run(world: world) { r in
                let b = FloatBuffer(count: 20, value: 1)
                do {
                    try world.communicator(rank: r).allReduce(b.pointer, count: r == 0 ? 10 : 20, op: .sum)
                } catch {
                    outcomes[r] = "\(error)"
                    throw error
                }
            }
        }
        #expect(outcomes[0]?.contains("does not match") == true)
        #expect(outcomes[1]?.contains("does not match") == true)
        #expect(outcomes[0]?.contains("count 20") == true)
    }

    @Test func abortReachesARankBlockedInReceive() throws {
        let world = try ThreadsWorld(size: 2, timeout: 5)
        let pool = try RankPool(size: 2)
        let start = monotonicNanoseconds()
        let outcome = PerRank<String>(2)
        #expect(throws: ParmlError.io("rank 0: no data")) {
            try pool.run(world: world) { r in
                if r == 0 {
                    sleepMicroseconds(50_000)
                    throw ParmlError.io("no data")
                }
                let b = FloatBuffer(count: 4, value: 0)
                do { try world.communicator(rank: r).receive(b.pointer, count: 4, from: 0) } catch {
                    outcome[r] = "\(error)"
                    throw error
                }
            }
        }
        #expect(elapsedSeconds(since: start) < 1)
        #expect(outcome[1] == "rank 1 of world: receive #0 from rank 0 failed: rank 0 failed: no data")
    }

    @Test func poolChecksItsArguments() throws {
        #expect(throws: ParmlError.self) { try RankPool(size: 0) }
        #expect(throws: ParmlError.self) { try ThreadsWorld(size: 2, timeout: 0) }
        let pool = try RankPool(size: 2)
        #expect(throws: ParmlError.self) { try pool.run(world: try ThreadsWorld(size: 3, timeout: 1)) { _ in } }
        // A run without a world, and an error from rank 0 is prefixed too.
        #expect(throws: ParmlError.invalidArgument("rank 0: nope")) {
            try pool.run(world: nil) { r in if r == 0 { throw ParmlError.invalidArgument("nope") } }
        }
        var ran = [false, false]
        let box = PerRank<Bool>(2)
        try pool.run(world: nil) { r in box[r] = true }
        ran = box.all.map { $0 == true }
        #expect(ran == [true, true])
    }
}
}
