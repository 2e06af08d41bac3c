#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

/// What a rank was doing over an interval of a step.
public enum TraceKind: Int, Sendable, CaseIterable {
    case forward, backward, send, receive, gradientReduction, clip, finiteCheck, optimizer, gather, statistics

    var label: String {
        switch self {
        case .forward: "forward"
        case .backward: "backward"
        case .send: "send"
        case .receive: "recv (waiting)"
        case .gradientReduction: "gradient reduction (dp)"
        case .clip: "gradient norm"
        case .finiteCheck: "finite check"
        case .optimizer: "optimizer"
        case .gather: "all-gather params (dp)"
        case .statistics: "statistics all-reduce"
        }
    }
}

public struct TraceEvent: Sendable {
    public let kind: TraceKind
    /// Micro-batch index for forward, backward, send and receive; −1 otherwise.
    public let microBatch: Int
    /// The run of layers (virtual stage: the stage itself but under
    /// interleaved 1F1B) of those events; −1 otherwise.
    public let run: Int
    public let step: Int
    /// Seconds on the monotonic clock.
    public let start: Double
    public let end: Double
}

/// One rank's timeline: a preallocated ring of events, recorded only while
/// enabled (a disabled recorder costs one branch per event).
final class TraceRecorder {
    static let capacity = 1 << 16
    private(set) var events: [TraceEvent] = []
    private(set) var dropped = 0
    var enabled = false {
        didSet { if enabled && events.capacity < TraceRecorder.capacity { events.reserveCapacity(TraceRecorder.capacity) } }
    }

    @inline(__always) func now() -> Double { enabled ? Clock.now() : 0 }

    @inline(__always) func record(_ kind: TraceKind, microBatch: Int = -1, run: Int = -1, step: Int, since start: Double) {
        guard enabled else { return }
        guard events.count < TraceRecorder.capacity else {
            dropped += 1
            return
        }
        events.append(TraceEvent(kind: kind, microBatch: microBatch, run: run, step: step, start: start, end: Clock.now()))
    }

    func clear() {
        events.removeAll(keepingCapacity: true)
        dropped = 0
    }
}

extension Trainer {
    /// Records every rank's timeline from the next step on (clearing what
    /// was recorded), or stops recording.
    public func setTracing(_ on: Bool) {
        for r in ranks {
            if on { r.trace.clear() }
            r.trace.enabled = on
        }
    }

    /// Micro-batch activation sets rank `rank` has kept alive at once (its
    /// pipeline slots): at most pp − stage under 1F1B, m under GPipe; under
    /// interleaved 1F1B each run of layers has its own.
    public func liveActivationSets(rank: Int) -> Int { ranks[rank].activationSlots }

    /// Bytes world rank `rank` has all-reduced inside tensor-parallel layers
    /// since the trainer was made (every pipeline slot included).
    public func tensorParallelBytes(rank: Int) -> Int { ranks[rank].tensorParallelFloats * MemoryLayout<Float>.stride }

    /// Events recorded on world rank `rank`, in order.
    public func traceEvents(rank: Int) -> [TraceEvent] { ranks[rank].trace.events }

    /// The pipeline bubble of world rank `rank`: per recorded step, the
    /// fraction of the step's pipeline phase (first forward to last backward
    /// on any stage of the rank's pipeline) in which the rank was not
    /// computing or sending, the quantity (p−1)/(m+p−1) predicts; the median
    /// over the steps, so that one step slowed by another process does not
    /// decide it. Waiting for a neighbour, and at the ends for the other
    /// stages, is idle.
    public func measuredBubble(rank: Int) -> Double {
        let pipeline = ranks.filter { $0.coordinate.data == ranks[rank].coordinate.data }
        var window: [Int: (start: Double, end: Double)] = [:]
        for r in pipeline {
            for e in r.trace.events where e.kind == .forward || e.kind == .backward {
                let w = window[e.step] ?? (e.start, e.end)
                window[e.step] = (min(w.start, e.start), max(w.end, e.end))
            }
        }
        var busy: [Int: Double] = [:]
        for e in ranks[rank].trace.events where e.kind == .forward || e.kind == .backward || e.kind == .send {
            busy[e.step, default: 0] += e.end - e.start
        }
        let idle = window.compactMap { step, w -> Double? in
            w.end > w.start ? max(0, 1 - (busy[step] ?? 0) / (w.end - w.start)) : nil
        }.sorted()
        guard !idle.isEmpty else { return 0 }
        let n = idle.count
        return n % 2 == 1 ? idle[n / 2] : (idle[n / 2 - 1] + idle[n / 2]) / 2
    }

    /// The recorded timelines as Chrome trace JSON (chrome://tracing,
    /// Perfetto): one track per rank named by its mesh position, one slice
    /// per event labelled with its micro-batch and stage.
    public func chromeTrace() -> String {
        var t0 = Double.infinity
        for r in ranks { if let f = r.trace.events.first { t0 = min(t0, f.start) } }
        var out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
        var first = true
        func emit(_ s: String) {
            if !first { out += ",\n" }
            out += s
            first = false
        }
        for r in ranks {
            let c = r.coordinate
            emit("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":\(r.rank),\"args\":{\"name\":\"rank \(r.rank) (dp \(c.data), stage \(c.stage))\"}}")
            for e in r.trace.events {
                let ts = (e.start - t0) * 1e6, dur = (e.end - e.start) * 1e6
                var name = e.kind.label
                if e.microBatch >= 0 { name += " mb \(e.microBatch)" }
                if layout.virtualStages > 1 && e.run >= 0 { name += " run \(e.run)" }
                emit(
                    "{\"name\":\"\(name)\",\"cat\":\"\(e.kind)\",\"ph\":\"X\",\"pid\":1,\"tid\":\(r.rank),\"ts\":\(ts),\"dur\":\(dur),"
                        + "\"args\":{\"step\":\(e.step),\"stage\":\(c.stage),\"micro_batch\":\(e.microBatch),\"run\":\(e.run)}}")
            }
        }
        out += "\n]}\n"
        return out
    }

    /// Writes `chromeTrace()` to `path` (replacing it).
    public func writeChromeTrace(to path: String) throws {
        guard let f = fopen(path, "w") else {
            throw ParmlError.io("cannot open \(path) for writing: \(String(cString: strerror(errno)))")
        }
        let text = chromeTrace()
        let n = text.utf8.count
        let written = text.withCString { fwrite($0, 1, n, f) }
        let closed = fclose(f)
        guard written == n, closed == 0 else { throw ParmlError.io("could not write the trace to \(path)") }
    }
}
