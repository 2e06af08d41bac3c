#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

/// A fault to inject into a data-parallel step, for tests of promise 4 (a
/// failing or stalled rank makes every rank return an error, never a hang).
/// Not part of the engine's API: Swift tests reach it with
/// `@_spi(Testing) import ParmlTraining`, programs in other languages
/// through PARML_TEST_FAULT (read by `Trainer.init`).
@_spi(Testing) public enum FaultInjection: Sendable {
    /// Rank `rank` throws at optimizer step `step`.
    case fail(rank: Int, step: Int)
    /// Rank `rank` sleeps `seconds` at optimizer step `step` before its work.
    case stall(rank: Int, step: Int, seconds: Double)
}

extension FaultInjection {
    /// "stall:RANK:STEP:SECONDS" or "fail:RANK:STEP" (PARML_TEST_FAULT).
    init(parsing text: String) throws {
        let parts = text.split(separator: ":").map(String.init)
        let numbers = parts.dropFirst().map { Double($0) }
        func int(_ i: Int) -> Int? { numbers[i].flatMap { $0 >= 0 && $0 == $0.rounded() && $0 < 1e9 ? Int($0) : nil } }
        switch parts.first {
        case "stall" where parts.count == 4:
            if let r = int(0), let s = int(1), let seconds = numbers[2], seconds >= 0, seconds <= 3600 {
                self = .stall(rank: r, step: s, seconds: seconds)
                return
            }
        case "fail" where parts.count == 3:
            if let r = int(0), let s = int(1) {
                self = .fail(rank: r, step: s)
                return
            }
        default: break
        }
        throw ParmlError.invalidArgument("PARML_TEST_FAULT='\(text)': expected stall:RANK:STEP:SECONDS or fail:RANK:STEP")
    }
}

extension RankContext {
    /// Fails or stalls this rank at the start of its part of step
    /// `stepIndex` when `fault` names it and that step.
    func inject(_ fault: FaultInjection, stepIndex: Int) throws {
        switch fault {
        case .fail(let r, let s) where r == rank && s == stepIndex:
            throw ParmlError.internal("injected failure on rank \(rank) at step \(stepIndex)")
        case .stall(let r, let s, let seconds) where r == rank && s == stepIndex:
            usleep(UInt32(min(seconds, 3600) * 1e6))
            try comms?.world.throwIfAborted("step \(stepIndex) (after stalling)")
        default: break
        }
    }
}
