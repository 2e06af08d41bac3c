/// A pipeline's step replayed op by op: each stage runs its StageSchedule
/// (the order the ranks run), an op starts once its input has arrived from
/// the neighbouring stage, and the ops running at once share the cores. It
/// gives the cost model a pipeline's compute and bubble (hops free) and
/// what its hops add: a hop costs its send, plus a wake-up where the
/// receiver had waited past the world's spin and yield windows and slept
/// (WorldCore's windows, used for MPI processes too). A hop into a stage
/// that waits for its input lands on the step's path; one whose receiver
/// is still busy with earlier work does not.
struct PipelineReplay {
    let kind: PipelineSchedule
    let stages: Int
    let virtualStages: Int
    let microBatches: Int
    /// Seconds of one micro-batch's forward and backward on each run of
    /// layers (virtual stage g = k·stages + s of stage s), in run order.
    let forward: [Double]
    let backward: [Double]

    /// The step replayed: seconds from the first op to the last, where a
    /// hop takes `hop` seconds and its receiver, if it waited longer than
    /// `window`, also `wake`; how many ops waited that long (their ranks
    /// slept); and the most any one stage was busy. The ops running at once
    /// share the cores: with k stages running, every op runs `stretch(k ·
    /// threadsPerStage)` times slower than alone (a stage's op runs on all
    /// its dp × tp ranks' threads at once; the default, no sharing). A
    /// pipeline's stages overlap only where the schedule lets them: 2
    /// micro-batches on 2 stages mostly alternate between the stages, 16
    /// keep both busy. nil where the schedules cannot all finish.
    func makespan(
        hop: Double, wake: Double, window: Double, threadsPerStage: Int = 1, stretch: (Int) -> Double = { _ in 1 }
    ) -> (seconds: Double, sleeps: Int, busiest: Double)? {
        let p = stages, v = virtualStages, m = microBatches, runs = p * v
        guard p > 0, v > 0, m > 0, forward.count == runs, backward.count == runs else { return nil }
        let schedules = (0..<p).map {
            StageSchedule(kind: kind, stage: $0, stages: p, microBatches: m, virtualStages: v).ops
        }
        var forwardDone = Array(repeating: [Double?](repeating: nil, count: m), count: runs)
        var backwardDone = forwardDone
        var next = [Int](repeating: 0, count: p)
        // The op each stage runs (its run and micro-batch, forward or not)
        // and the work it has left; when each may start its next op; since
        // when each has had nothing to run.
        var running = [(g: Int, j: Int, forward: Bool, left: Double)?](repeating: nil, count: p)
        var startAt = [Double?](repeating: nil, count: p)
        var idleSince = [Double](repeating: 0, count: p)
        var busy = [Double](repeating: 0, count: p)
        var now = 0.0, sleeps = 0
        while true {
            for s in 0..<p where running[s] == nil && startAt[s] == nil && next[s] < schedules[s].count {
                // When the op's input is here (nil: not sent yet), and whether it crossed a hop.
                let done: Double?, remote: Bool
                switch schedules[s][next[s]] {
                case .forward(let mb, let k):
                    let g = k * p + s
                    remote = g > 0
                    done = g == 0 ? 0 : forwardDone[g - 1][mb]
                case .backward(let mb, let k):
                    let g = k * p + s
                    remote = g < runs - 1
                    done = remote ? backwardDone[g + 1][mb] : forwardDone[g][mb]
                }
                guard let done else { continue }
                let arrival = done + (remote ? hop : 0)
                var start = max(arrival, idleSince[s])
                if remote && arrival - idleSince[s] > window {
                    start += wake
                    sleeps += 1
                }
                startAt[s] = start
            }
            for s in 0..<p where running[s] == nil {
                guard let t = startAt[s], t <= now else { continue }
                switch schedules[s][next[s]] {
                case .forward(let mb, let k): running[s] = (k * p + s, mb, true, forward[k * p + s])
                case .backward(let mb, let k): running[s] = (k * p + s, mb, false, backward[k * p + s])
                }
                startAt[s] = nil
            }
            let active = running.indices.filter { running[$0] != nil }
            let factor = max(1, stretch(active.count * threadsPerStage))
            let finish = active.map { now + running[$0]!.left * factor }.min()
            let arrive = startAt.compactMap { $0 }.filter { $0 > now }.min()
            guard let then = [finish, arrive].compactMap({ $0 }).min() else { break }
            let dt = then - now
            now = then
            for s in active {
                busy[s] += dt
                running[s]!.left -= dt / factor
                guard let op = running[s], op.left <= 1e-15 * max(1, op.forward ? forward[op.g] : backward[op.g]) else { continue }
                if op.forward { forwardDone[op.g][op.j] = now } else { backwardDone[op.g][op.j] = now }
                running[s] = nil
                idleSince[s] = now
                next[s] += 1
            }
        }
        guard zip(next, schedules).allSatisfy({ $0 == $1.count }) else { return nil }
        return (now, sleeps, busy.max() ?? 0)
    }

    /// What the hops add to the step (the replay with them less the replay
    /// without, the cores shared alike in both), and how many ops of the
    /// replay with them slept first. `without`: the hop-free replay's
    /// seconds where the caller has them (no wake-up without hops, so the
    /// window does not change them).
    func hops(
        seconds hop: Double, wake: Double, window: Double, threadsPerStage: Int = 1, stretch: (Int) -> Double = { _ in 1 },
        without: Double? = nil
    ) -> (seconds: Double, sleeps: Int)? {
        guard let with = makespan(hop: hop, wake: wake, window: window, threadsPerStage: threadsPerStage, stretch: stretch),
            let without = without ?? makespan(hop: 0, wake: 0, window: window, threadsPerStage: threadsPerStage, stretch: stretch)?.seconds
        else { return nil }
        return (max(0, with.seconds - without), with.sleeps)
    }
}
