import ParmlTensor

/// The advice as a table for people (Python prints it; C gets it from
/// parml_advice_text). The wording may change; do not parse it.
extension Advice {
    public var table: String {
        func ms(_ s: Double) -> String { Bytes.round1(s * 1000) }
        func name(_ s: StrategyConfig) -> String {
            var n = "dp\(s.dp) pp\(s.pp) tp\(s.tp)"
            if s.microBatches > 1 { n += " m\(s.microBatches)" }
            if s.pipelineSchedule == .interleaved { n += " v\(s.virtualStages)" }
            if s.zeroStage > 0 { n += " zero\(s.zeroStage)" }
            return n
        }
        let c = calibration
        var lines = [
            "calibration: \(calibrationOrigin.rawValue) (\(c.cpuModel), \(c.cores) cores, parml \(c.libraryVersion), measured in "
                + "\(Bytes.round1(c.seconds)) s at load average \(Bytes.round1(c.loadAverage)))",
            "rank  layout                  step ms  compute  comm  bubble  optim  overhead  peak/rank  reason",
        ]
        for (i, p) in ranked.enumerated() {
            let cols = [
                String(i + 1).padding(4), name(p.strategy).padding(22), ms(p.stepSeconds).padding(7, left: true),
                ms(p.compute).padding(8, left: true), ms(p.communication).padding(5, left: true), ms(p.bubble).padding(7, left: true),
                ms(p.optimizer).padding(6, left: true), ms(p.overhead).padding(9, left: true),
                Bytes.text(Double(p.peakBytes)).padding(10, left: true), p.reason,
            ]
            lines.append(cols.joined(separator: "  "))
        }
        if !excluded.isEmpty {
            lines.append("excluded:")
            for e in excluded { lines.append("  " + name(e.strategy).padding(22) + "  " + e.why) }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    func padding(_ width: Int, left: Bool = false) -> String {
        let pad = String(repeating: " ", count: max(0, width - count))
        return left ? pad + self : self + pad
    }
}

extension StrategyAdvisor {
    /// The advice's first layout, with `choice` saying why, for a trainer
    /// (strategy "auto"); throws when no layout fits the constraints.
    public static func choose(_ advice: Advice) throws -> StrategyConfig {
        guard let first = advice.ranked.first else {
            let why = advice.excluded.prefix(3).map(\.why).joined(separator: "; ")
            throw ParmlError.invalidArgument(
                "strategy auto: no layout fits the constraints (\(advice.excluded.count) excluded, e.g. \(why))")
        }
        var s = first.strategy
        let ms = Bytes.round1(first.stepSeconds * 1000)
        s.choice = "fastest of \(advice.ranked.count) feasible layout\(advice.ranked.count == 1 ? "" : "s") "
            + "(predicted \(ms) ms per step, \(Bytes.text(Double(first.peakBytes))) on the fullest rank"
            + (first.reason.isEmpty ? ")" : "): \(first.reason)")
        return s
    }
}
