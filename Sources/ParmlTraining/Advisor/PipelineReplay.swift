/// A pipeline's step replayed op by op, to price its hops: each stage runs
/// its StageSchedule (the order the ranks run), an op starts once its input
/// has arrived from the neighbouring stage, and a hop costs its send, plus
/// a wake-up where the receiver had waited past the world's spin and yield
/// windows and slept (WorldCore's windows, used for MPI processes too). A hop into a stage that
/// waits for its input lands on the step's path; one whose receiver is
/// still busy with earlier work does not. Compute, bubble and the cores'
/// sharing stay the cost model's: the replay only says what the hops add.
struct PipelineReplay {
    let kind: PipelineSchedule
    let stages: Int
    let virtualStages: Int
    let microBatches: Int
    /// Seconds of one micro-batch's forward and backward on each run of
    /// layers (virtual stage g = k·stages + s of stage s), in run order.
    let forward: [Double]
    let backward: [Double]

    /// Seconds from the first op to the last stage's end, where a hop
    /// takes `hop` seconds and its receiver, if it waited longer than
    /// `window`, also `wake`; and how many ops waited that long (their
    /// ranks slept). nil where the schedules cannot all finish.
    func makespan(hop: Double, wake: Double, window: Double) -> (seconds: Double, sleeps: Int)? {
        let p = stages, v = virtualStages, m = microBatches, runs = p * v
        guard p > 0, v > 0, m > 0, forward.count == runs, backward.count == runs else { return nil }
        let schedules = (0..<p).map {
            StageSchedule(kind: kind, stage: $0, stages: p, microBatches: m, virtualStages: v).ops
        }
        var forwardDone = Array(repeating: [Double?](repeating: nil, count: m), count: runs)
        var backwardDone = forwardDone
        var next = [Int](repeating: 0, count: p)
        // When each stage finished its last op.
        var clock = [Double](repeating: 0, count: p)
        var left = schedules.reduce(0) { $0 + $1.count }
        var sleeps = 0
        while left > 0 {
            var progressed = false
            for s in 0..<p {
                while next[s] < schedules[s].count {
                    let op = schedules[s][next[s]]
                    // When the op's input is here (nil: not sent yet), and whether it crossed a hop.
                    let arrival: Double?, remote: Bool, g: Int, j: Int
                    switch op {
                    case .forward(let mb, let k):
                        (g, j) = (k * p + s, mb)
                        remote = g > 0
                        arrival = g == 0 ? 0 : forwardDone[g - 1][j].map { $0 + hop }
                    case .backward(let mb, let k):
                        (g, j) = (k * p + s, mb)
                        remote = g < runs - 1
                        arrival = remote ? backwardDone[g + 1][j].map { $0 + hop } : forwardDone[g][j]
                    }
                    guard let ready = arrival else { break }
                    var start = max(clock[s], ready)
                    if remote && ready - clock[s] > window {
                        start += wake
                        sleeps += 1
                    }
                    if case .forward = op {
                        clock[s] = start + forward[g]
                        forwardDone[g][j] = clock[s]
                    } else {
                        clock[s] = start + backward[g]
                        backwardDone[g][j] = clock[s]
                    }
                    next[s] += 1
                    left -= 1
                    progressed = true
                }
            }
            if !progressed { return nil }
        }
        return (clock.max() ?? 0, sleeps)
    }

    /// Seconds from the first op to the last, hops free, where the ops
    /// running at once share the cores: with k stages running, every op
    /// runs `stretch(k · threadsPerStage)` times slower than alone (each
    /// stage's op runs on all its dp × tp ranks' threads at once). And the
    /// most any one stage was busy. A pipeline's stages overlap only where
    /// the schedule lets them: 2 micro-batches on 2 stages alternate
    /// between the stages, 16 keep both busy most of the step.
    /// nil where the schedules cannot all finish.
    func sharedMakespan(threadsPerStage: Int, stretch: (Int) -> Double) -> (seconds: Double, busiest: Double)? {
        let p = stages, v = virtualStages, m = microBatches, runs = p * v
        guard p > 0, v > 0, m > 0, forward.count == runs, backward.count == runs else { return nil }
        let schedules = (0..<p).map {
            StageSchedule(kind: kind, stage: $0, stages: p, microBatches: m, virtualStages: v).ops
        }
        var forwardDone = Array(repeating: [Bool](repeating: false, count: m), count: runs)
        var backwardDone = forwardDone
        var next = [Int](repeating: 0, count: p)
        // The op each stage runs (its run and micro-batch, forward or not) and the work it has left.
        var running = [(g: Int, j: Int, forward: Bool, left: Double)?](repeating: nil, count: p)
        var busy = [Double](repeating: 0, count: p)
        var now = 0.0
        while true {
            for s in 0..<p where running[s] == nil && next[s] < schedules[s].count {
                switch schedules[s][next[s]] {
                case .forward(let mb, let k):
                    let g = k * p + s
                    if g == 0 || forwardDone[g - 1][mb] { running[s] = (g, mb, true, forward[g]) }
                case .backward(let mb, let k):
                    let g = k * p + s
                    if g < runs - 1 ? backwardDone[g + 1][mb] : forwardDone[g][mb] { running[s] = (g, mb, false, backward[g]) }
                }
            }
            let active = running.indices.filter { running[$0] != nil }
            if active.isEmpty { break }
            let factor = max(1, stretch(active.count * threadsPerStage))
            let dt = active.map { running[$0]!.left }.min()! * factor
            now += dt
            for s in active {
                busy[s] += dt
                running[s]!.left -= dt / factor
                guard let op = running[s], op.left <= 1e-15 else { continue }
                if op.forward { forwardDone[op.g][op.j] = true } else { backwardDone[op.g][op.j] = true }
                running[s] = nil
                next[s] += 1
            }
        }
        guard zip(next, schedules).allSatisfy({ $0 == $1.count }) else { return nil }
        return (now, busy.max() ?? 0)
    }

    /// What the hops add to the step (the replay with them less the replay
    /// without), and how many ops of the replay with them slept first.
    func hops(seconds hop: Double, wake: Double, window: Double) -> (seconds: Double, sleeps: Int)? {
        guard let with = makespan(hop: hop, wake: wake, window: window), let without = makespan(hop: 0, wake: 0, window: window)
        else { return nil }
        return (max(0, with.seconds - without.seconds), with.sleeps)
    }
}
