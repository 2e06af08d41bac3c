// What the Swift benchmark programs share: a monotonic clock, medians,
// rounding, the bus-bandwidth formula, one JSON line per result (the form
// tools/bench_report.py merges into bench/results.json), and the
// 784-1024-1024-10 MLP the issues' throughput figures are defined on.

import ParmlModel

#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds.
public func seconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

public func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

public func rounded(_ x: Double, _ digits: Int) -> Double {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    return (x * p).rounded() / p
}

/// All-reduce bus bandwidth in GB/s: 2(n−1)/n × bytes / time.
public func busBandwidth(bytes: Int, ranks: Int, seconds t: Double) -> Double {
    2 * Double(ranks - 1) / Double(ranks) * Double(bytes) / t / 1e9
}

/// Prints one result as a JSON line: value and baseline rounded to
/// `digits`, their ratio to `ratioDigits`.
public func report(
    _ name: String, _ value: Double, unit: String, baseline: String, _ base: Double, digits: Int = 1, ratioDigits: Int = 3
) {
    print(
        "{\"name\": \"\(name)\", \"value\": \(rounded(value, digits)), \"unit\": \"\(unit)\", "
            + "\"baseline\": \"\(baseline)\", \"baseline_value\": \(rounded(base, digits)), "
            + "\"ratio\": \(rounded(base != 0 ? value / base : 0, ratioDigits))}")
}

/// The 784-1024-1024-10 MLP with ReLU (seed 2) of the throughput benchmarks
/// (with another class count: the same MLP with a wider classifier).
public func benchmarkMLP(classes: Int = 10) throws -> Model {
    try benchmarkMLP(widths: [784, 1024, 1024, classes])
}

/// Linear layers of these widths (input, hidden..., classes) with a ReLU
/// between each two, initialized with `seed`.
public func benchmarkMLP(widths: [Int], seed: UInt64 = 2) throws -> Model {
    let m = Model()
    for i in 1..<widths.count {
        try m.add(try Linear(inFeatures: widths[i - 1], outFeatures: widths[i]))
        if i + 1 < widths.count { try m.add(Activation(.relu)) }
    }
    try m.initialize(seed: seed)
    return m
}

/// nanoGPT's GPT (seed 1, dropout 0): token and position embeddings,
/// pre-LayerNorm blocks of causal attention and a GELU MLP, a final
/// LayerNorm and a head, tied to the token embedding or a Linear of its own.
public func benchmarkGPT(layers: Int, heads: Int, width: Int, context: Int, vocabulary: Int, tiedHead: Bool) throws -> Model {
    let m = Model()
    try m.add(try Embedding(count: vocabulary, dim: width, initStd: 0.02))
    try m.add(try PositionEmbedding(positions: context, dim: width, initStd: 0.02))
    for _ in 0..<layers {
        try m.add(Residual(Sequential([try LayerNorm(features: width), try CausalSelfAttention(features: width, heads: heads)])))
        try m.add(
            Residual(
                Sequential([
                    try LayerNorm(features: width), try Linear(inFeatures: width, outFeatures: 4 * width), Activation(.gelu),
                    try Linear(inFeatures: 4 * width, outFeatures: width),
                ])))
    }
    try m.add(try LayerNorm(features: width))
    try m.add(tiedHead ? try TiedClassifier(count: vocabulary, dim: width) : try Linear(inFeatures: width, outFeatures: vocabulary, bias: false))
    try m.initialize(seed: 1)
    return m
}
