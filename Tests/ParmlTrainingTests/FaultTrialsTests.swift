import Foundation
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// Promise 4 (no hang) as a count: many trials of each injected fault, each
// on a fresh trainer (a stalled rank leaves its RankPool unusable, so a
// trainer is never reused after a fault). Every trial must end with an error
// from the host's step call within the deadline; a trial that does not is a
// hang. Each test prints one summary line, which docs/reliability.md quotes:
//
//   swift test --filter FaultTrials
//
// Trials vary the layout: dp = 2, 3, 4; ZeRO stage 0-3; default and
// deterministic mode; the fault at the first step or after a good one.

/// Trials per fault kind (issue 8 asks for at least 50). A throw costs
/// milliseconds, a stall about twice the watchdog.
private let throwTrials = 200
private let stallTrials = 50
/// Watchdog of the stall trials: short, so that 50 stalls take seconds.
private let watchdog = 0.3
/// Watchdog of the throw trials. A throw must reach every rank as an error,
/// never through a peer waiting out its watchdog; the only sign of such a
/// wait is the time, so the watchdog is long and a throw must come back
/// before it. Correct code takes about a millisecond (slowest of 200 trials
/// 0.001 s in a debug build on 2 cores); with the watchdog at 0.3 s and the
/// bound at 0.3 s, a thread descheduled on a loaded machine or under
/// ThreadSanitizer could fail a correct run (issue 24, item 8).
private let throwWatchdog = 5.0

/// The host's step must return within this many seconds of the fault, or
/// the trial counts as a hang: RankPool.run's bound (the watchdog in the
/// collective, then the watchdog again for a rank outside any collective),
/// plus 10 watchdogs and 2 s for scheduling on 2 shared cores and under
/// ThreadSanitizer (it was 2 watchdogs + 1 s). A hang never ends, so a
/// generous bound loses nothing. Measured slowest stall trial: 0.606 s.
private func deadline(_ watchdog: Double) -> Double { 2 * watchdog + 10 * watchdog + 2 }

private struct Trial {
    let index: Int
    let watchdog: Double
    let dp: Int
    let zeroStage: Int
    let deterministic: Bool
    /// The step (0 or 1) the fault is injected at; 1 means one good step first.
    let faultStep: Int

    init(_ i: Int, watchdog: Double) {
        index = i
        self.watchdog = watchdog
        dp = 2 + i % 3
        zeroStage = (i / 3) % 4
        deterministic = (i / 12) % 2 == 1
        faultStep = i % 2
    }

    var layout: String {
        "dp=\(dp) zero=\(zeroStage)\(deterministic ? " deterministic" : "")\(!deterministic && (index / 2) % 2 == 0 ? " overlap" : "") "
            + "fault at step \(faultStep)"
    }

    func trainer() throws -> Trainer {
        var s = StrategyConfig()
        s.dp = dp
        s.zeroStage = zeroStage
        s.deterministic = deterministic
        s.gradientChunk = 4
        s.watchdogSeconds = watchdog
        s.seed = UInt64(index)
        // Half the default-mode trials reduce on a communication thread (a
        // stalled peer then times out there, not on the rank's thread).
        s.overlap = !deterministic && (index / 2) % 2 == 0 ? .on : .off
        var o = OptimizerConfig()
        o.kind = index % 4 < 2 ? .sgd : .adamW
        o.learningRate = 0.05
        o.momentum = o.kind == .sgd ? 0.9 : 0
        o.clipGradNorm = index % 5 == 0 ? 0.5 : 0
        return try Trainer(
            model: try classifier(seed: UInt64(index), hidden: 8, dropout: index % 3 == 0 ? 0.1 : 0),
            loss: .crossEntropy, optimizer: o, strategy: s)
    }
}

/// 18 samples of the 2 → 8 → 3 classifier's data (uneven over 4 ranks).
private func trialBatch() throws -> (Tensor, Tensor) {
    let n = 18
    let x = randomArray(2 * n, seed: 3)
    let y = (0..<n).map { Float($0 % 3) }
    return (try Tensor(x, shape: Shape(n, 2)), try Tensor(y, shape: Shape(n)))
}

private struct Tally {
    let watchdog: Double
    var trials = 0
    var errors = 0
    var hangs = 0
    var slowest = 0.0

    func line(_ kind: String) -> String {
        "fault trials: \(kind): \(trials) trials, \(errors) ended in an error, \(hangs) hangs (no error within "
            + "\(deadline(watchdog)) s), slowest \(String(format: "%.3f", slowest)) s, watchdog \(watchdog) s"
    }
}

/// Runs the faulting step of `trial` and checks how it ended.
private func runFaultingStep(
    _ trial: Trial, fault: FaultInjection, tally: inout Tally, check: (ParmlError, Double) -> Void
) throws {
    let t = try trial.trainer()
    let (x, y) = try trialBatch()
    if trial.faultStep > 0 { try t.step(inputs: x, targets: y) }
    t.faultInjection = fault
    tally.trials += 1
    let start = Date()
    var caught: ParmlError?
    do {
        try t.step(inputs: x, targets: y)
    } catch let e as ParmlError {
        caught = e
    } catch {
        Issue.record("trial \(trial.index) (\(trial.layout)): not a ParmlError: \(error)")
    }
    let elapsed = Date().timeIntervalSince(start)
    tally.slowest = max(tally.slowest, elapsed)
    guard let e = caught else {
        Issue.record("trial \(trial.index) (\(trial.layout)): the step did not fail")
        return
    }
    if elapsed > deadline(trial.watchdog) {
        tally.hangs += 1
        Issue.record("trial \(trial.index) (\(trial.layout)): the step took \(elapsed) s (deadline \(deadline(trial.watchdog)) s): \(e)")
        return
    }
    tally.errors += 1
    check(e, elapsed)
    // The failed step changed nothing the host sees, and the trainer refuses
    // further steps at once (its replicas may disagree now).
    #expect(t.stepCount == trial.faultStep, "trial \(trial.index)")
    // The refusal runs no collective (its message says why it refuses); the
    // time bound only catches one that hangs.
    let again = Date()
    let refusal = parmlError { try t.step(inputs: x, targets: y) }
    #expect(refusal?.message.contains("earlier step failed") == true, "trial \(trial.index): \(String(describing: refusal))")
    #expect(Date().timeIntervalSince(again) < deadline(trial.watchdog), "trial \(trial.index): the refusal waited")
}

@Suite(.serialized)
struct FaultTrials {
    /// A rank throws in the middle of a step: every other rank leaves its
    /// collective with an error and the host's call fails naming the rank.
    @Test func aThrowingRankEndsEveryTrialInAnError() throws {
        var tally = Tally(watchdog: throwWatchdog)
        var waited = false
        for i in 0..<throwTrials where !waited {
            let trial = Trial(i, watchdog: throwWatchdog)
            let rank = i % trial.dp  // rank 0 (the host's thread) included
            try runFaultingStep(trial, fault: .fail(rank: rank, step: trial.faultStep), tally: &tally) { e, elapsed in
                #expect(e.message.contains("rank \(rank)"), "trial \(i) (\(trial.layout)): \(e)")
                #expect(e.message.contains("injected failure"), "trial \(i): \(e)")
                // Every rank returned (none was given up on) and none waited
                // out the watchdog (one trial that did stops the test: each
                // would take the whole watchdog).
                #expect(!e.message.contains("did not return"), "trial \(i): \(e)")
                waited = elapsed >= throwWatchdog
                #expect(!waited, "trial \(i) (\(trial.layout)): a throw took \(elapsed) s, the whole watchdog, to reach the host")
            }
        }
        print(tally.line("rank throws"))
        #expect(tally.trials == throwTrials && tally.errors == throwTrials && tally.hangs == 0)
    }

    /// A rank stalls outside any collective. Half the trials it sleeps 1.5×
    /// the watchdog (it wakes after its peers timed out, and fails in its
    /// first collective); half 4× (the pool gives up on it and leaves its
    /// thread to finish alone). Rank 0 is not stalled: it is the host's own
    /// thread, which nothing can interrupt.
    @Test func aStalledRankEndsEveryTrialInAnError() throws {
        var tally = Tally(watchdog: watchdog)
        var givenUp = 0
        for i in 0..<stallTrials {
            let trial = Trial(i, watchdog: watchdog)
            let rank = 1 + i % (trial.dp - 1)
            let longStall = (i / 2) % 2 == 0
            let seconds = watchdog * (longStall ? 4 : 1.5)
            try runFaultingStep(trial, fault: .stall(rank: rank, step: trial.faultStep, seconds: seconds), tally: &tally) {
                e, _ in
                #expect(e.kind == "communication", "trial \(i): \(e)")
                #expect(e.message.contains("rank \(rank)"), "trial \(i) (\(trial.layout)): \(e)")
                if e.message.contains("did not return") { givenUp += 1 }
            }
        }
        print(tally.line("rank stalls") + ", \(givenUp) stalled ranks given up on")
        // Let the last ranks given up on wake, fail in their first collective
        // and exit before this process may: a rank thread still inside
        // OpenBLAS while the process exits can crash in OpenBLAS's exit-time
        // teardown (seen under ThreadSanitizer; docs/reliability.md).
        Thread.sleep(forTimeInterval: 4 * watchdog + 1)
        #expect(tally.trials == stallTrials && tally.errors == stallTrials && tally.hangs == 0)
    }
}
