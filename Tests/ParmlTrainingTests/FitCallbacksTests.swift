import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

/// The built-in callbacks of fit (FitCallbacks.swift): their decisions on
/// scripted metric sequences, and fit with them and with callbacks that act.
@Suite struct FitCallbacksTests {
    func trainer(lr: Float = 0.1, dp: Int = 1, schedule: ScheduleConfig = ScheduleConfig()) throws -> Trainer {
        var opt = OptimizerConfig()
        opt.learningRate = lr
        opt.momentum = 0.9
        opt.schedule = schedule
        var s = StrategyConfig()
        s.dp = dp
        return try Trainer(model: try classifier(seed: 5), loss: .crossEntropy, optimizer: opt, strategy: s)
    }

    /// Feeds a scripted val_loss sequence to the built-ins, as fit would.
    func script(_ t: Trainer, _ c: FitCallbacks, _ losses: [Float]) throws -> [FitEvents] {
        var state = FitCallbackState()
        var out: [FitEvents] = []
        for (i, v) in losses.enumerated() {
            var m = EpochMetrics()
            m.epoch = i + 1
            m.validationLoss = v
            let e = try t.runBuiltIns(c, &state, m)
            out.append(e)
            if e.contains(.stopping) { break }
        }
        return out
    }

    @Test func earlyStoppingStopsAfterPatienceEpochsWithoutImprovement() throws {
        let t = try trainer()
        var c = FitCallbacks()
        var e = EarlyStoppingConfig(monitor: Monitor(.validationLoss, minDelta: 0.01))
        e.patience = 2
        c.earlyStopping = e
        // Best at epoch 3 (0.5); 0.495 does not beat it by more than 0.01; stop at 5.
        let events = try script(t, c, [1.0, 0.8, 0.5, 0.495, 0.6, 0.1])
        #expect(events.count == 5)
        #expect(events.map { $0.contains(.best) } == [true, true, true, false, false])
        #expect(events.last!.contains(.stopping))
        // NaN never improves; patience 0 stops at the first epoch without improvement.
        e.patience = 0
        c.earlyStopping = e
        #expect(try script(t, c, [1.0, .nan, 0.1]).count == 2)
        // Max mode on an accuracy (auto picks max).
        var acc = FitCallbacks()
        var s = EarlyStoppingConfig(monitor: Monitor(.validationAccuracy))
        s.patience = 1
        acc.earlyStopping = s
        var state = FitCallbackState()
        var stops: [Bool] = []
        for v: Float in [0.5, 0.7, 0.6] {
            var m = EpochMetrics()
            m.validationAccuracy = v
            stops.append(try t.runBuiltIns(acc, &state, m).contains(.stopping))
        }
        #expect(stops == [false, false, true])
    }

    @Test func reduceOnPlateauLowersTheRateAtTheRightEpochs() throws {
        let t = try trainer(lr: 0.1)
        var c = FitCallbacks()
        var r = ReduceOnPlateauConfig(monitor: Monitor(.validationLoss, minDelta: 0))
        r.factor = 0.5
        r.patience = 2
        r.cooldown = 1
        r.minLearningRate = 0.02
        c.reduceOnPlateau = r
        var state = FitCallbackState()
        var rates: [Float] = []
        // Keras's counting: epoch 1 is the best; 2 and 3 flat → 0.05 after 3; the cooldown
        // epoch 4 ends the cooldown and counts (as in Keras), 5 → 0.025; 6, 7 → max(0.0125,
        // 0.02) = 0.02; from then on lr is min_lr and stays.
        for epoch in 1...13 {
            var m = EpochMetrics()
            m.epoch = epoch
            m.validationLoss = 1
            _ = try t.runBuiltIns(c, &state, m)
            rates.append(t.learningRate)
        }
        #expect(rates == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02])
    }

    @Test func setLearningRateScalesTheSchedule() throws {
        var step = ScheduleConfig()
        step.kind = .step
        step.stepSize = 2
        step.gamma = 0.5
        let t = try trainer(lr: 0.1, schedule: step)
        let data = try blobs(64, seed: 3)
        var o = FitOptions()
        o.batchSize = 32  // 2 steps: the schedule halves
        try t.fit(data, options: o)
        #expect(t.learningRate == 0.05)
        try t.setLearningRate(0.3)
        #expect(t.learningRate == 0.3)
        try t.fit(data, options: o)  // two more steps: the schedule halves again, from the new rate
        #expect(t.learningRate == 0.15)
        expectError(parmlError { try t.setLearningRate(0) }, "invalidArgument", mentions: ["> 0"])
        expectError(parmlError { try t.setLearningRate(.nan) }, "invalidArgument")
    }

    @Test func keepBestSavesOnlyOnImprovement() throws {
        let t = try trainer()
        var c = FitCallbacks()
        c.keepBest = KeepBestConfig(monitor: Monitor(.validationLoss))
        var saved: [Int] = []
        c.save = { m in saved.append(m.epoch) }
        _ = try script(t, c, [1.0, 1.2, 0.9, 0.9, 0.3])
        #expect(saved == [1, 3, 5])
        c.keepBest!.bestOnly = false
        saved = []
        _ = try script(t, c, [1.0, 1.2])
        #expect(saved == [1, 2])
    }

    /// fit with early stopping and restore: it stops where the Keras rule
    /// says on the val_loss it measured, and the model ends with the best
    /// epoch's parameters bit for bit.
    @Test(arguments: [1, 2]) func earlyStoppingRestoresTheBestEpochBitForBit(dp: Int) throws {
        let t = try trainer(lr: 0.5, dp: dp)
        let data = try blobs(120, seed: 11), validation = try blobs(60, seed: 12)
        var o = FitOptions()
        o.epochs = 30
        o.batchSize = 40
        var c = FitCallbacks()
        var e = EarlyStoppingConfig(monitor: Monitor(.validationLoss, minDelta: 0.02))
        e.patience = 2
        e.restoreBestWeights = true
        c.earlyStopping = e
        var losses: [Float] = []
        var params: [[UInt32]] = []
        c.progress = { m in
            losses.append(m.validationLoss)
            params.append(bits(t.model.parameters))
            return true
        }
        let last = try t.fit(data, options: o, validation: validation, callbacks: c)
        // The reference rule, on the losses fit measured.
        var best = Float.infinity, bestEpoch = 0, wait = 0, stop = 0
        for (i, v) in losses.enumerated() {
            if v < best - 0.02 {
                best = v
                bestEpoch = i + 1
                wait = 0
            } else {
                wait += 1
                if wait >= 2 {
                    stop = i + 1
                    break
                }
            }
        }
        #expect(stop > 0 && stop < 30, "the scripted run must stop early: \(losses)")
        #expect(losses.count == stop)
        #expect(last.epoch == stop && last.events.contains(.stopping) && last.bestEpoch == bestEpoch)
        #expect(t.epochCount == stop)
        #expect(bits(t.model.parameters) == params[bestEpoch - 1])
        #expect(bits(t.model.parameters) != params[stop - 1])
    }

    /// A callback that evaluates, captures the state and predicts every 2
    /// steps and every epoch changes nothing: the same parameters bit for
    /// bit as a fit without it.
    @Test(arguments: [1, 2]) func readingCallbacksLeaveTheFitUnchanged(dp: Int) throws {
        let data = try blobs(150, seed: 13), validation = try blobs(45, seed: 14)
        var o = FitOptions()
        o.epochs = 3
        o.batchSize = 32
        let plain = try trainer(dp: dp)
        try plain.fit(data, options: o, validation: validation)
        let busy = try trainer(dp: dp)
        var c = FitCallbacks()
        c.everySteps = 2
        var calls = (steps: 0, epochs: 0)
        c.progress = { m in
            if m.endOfEpoch { calls.epochs += 1 } else { calls.steps += 1 }
            #expect(m.endOfEpoch || m.steps % 2 == 0)
            _ = try busy.evaluate(validation, batchSize: 7)
            _ = try busy.captureState()
            _ = try busy.model.forward(try Tensor([0.5, -1], shape: Shape(1, 2)), PassContext(training: false))
            return true
        }
        try busy.fit(data, options: o, validation: validation, callbacks: c)
        #expect(calls.epochs == 3 && calls.steps == 7)  // 5 steps an epoch, 15 in all: steps 2, 4, ..., 14
        expectEqualElements(bits(busy.model.parameters), bits(plain.model.parameters))
    }

    @Test func badCallbackOptionsAreRefusedBeforeTraining() throws {
        let t = try trainer()
        let data = try blobs(30, seed: 1)
        var c = FitCallbacks()
        c.earlyStopping = EarlyStoppingConfig(monitor: Monitor(.validationLoss))
        expectError(parmlError { try t.fit(data, options: FitOptions(), callbacks: c) }, "invalidArgument", mentions: ["validation"])
        c = FitCallbacks()
        var r = ReduceOnPlateauConfig(monitor: Monitor(.trainLoss))
        r.factor = 1.5
        c.reduceOnPlateau = r
        expectError(parmlError { try t.fit(data, options: FitOptions(), callbacks: c) }, "invalidArgument", mentions: ["factor"])
        #expect(t.stepCount == 0)
    }
}
