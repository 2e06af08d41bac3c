import Foundation
import ParmlData
import ParmlModel
import ParmlTensor
import Testing

@testable import ParmlTraining

/// `n` uniforms in [low, high) from Philox(seed), stream `stream`.
func randomArray(_ n: Int, seed: UInt64, stream: UInt64 = 0, low: Float = -1, high: Float = 1) -> [Float] {
    var a = [Float](repeating: 0, count: n)
    guard n > 0 else { return a }
    a.withUnsafeMutableBufferPointer {
        Philox(seed: seed).fillUniform($0.baseAddress!, count: n, stream: stream, low: low, high: high)
    }
    return a
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    var m = 0.0
    for i in a.indices { m = maxNaN(m, abs(Double(a[i]) - Double(b[i]))) }
    return m
}

/// max that propagates NaN (Swift's max(0, .nan) is 0, which would hide a NaN result).
func maxNaN(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .nan : max(a, b) }

/// `n` points in the plane from three Gaussian blobs (σ = 0.7) centred at
/// (0, 3), (3, −2), (−3, −2); the label is the blob. Box–Muller over Philox.
func blobs(_ n: Int, seed: UInt64) throws -> Dataset {
    let centres: [(Float, Float)] = [(0, 3), (3, -2), (-3, -2)]
    let u = randomArray(2 * n, seed: seed, stream: 1, low: 0, high: 1)
    var x = [Float](), y = [Float]()
    for i in 0..<n {
        let c = i % 3
        let r = (-2 * log(Double(1 - u[2 * i]))).squareRoot()  // 1 − u ∈ (0, 1]
        let a = 2 * Double.pi * Double(u[2 * i + 1])
        x.append(centres[c].0 + 0.7 * Float(r * cos(a)))
        x.append(centres[c].1 + 0.7 * Float(r * sin(a)))
        y.append(Float(c))
    }
    return try Dataset(inputs: try Tensor(x, shape: Shape(n, 2)), targets: try Tensor(y, shape: Shape(n)))
}

/// y = 2·x0 − 3·x1 + 0.5 on x ∈ U(−1, 1)²: a regression a Linear(2, 1) fits exactly.
func linearData(_ n: Int, seed: UInt64) throws -> Dataset {
    let x = randomArray(2 * n, seed: seed, stream: 2)
    var y = [Float](repeating: 0, count: n)
    for i in 0..<n {
        let a: Float = 2 * x[2 * i], b: Float = 3 * x[2 * i + 1]
        y[i] = a - b + 0.5
    }
    return try Dataset(inputs: try Tensor(x, shape: Shape(n, 2)), targets: try Tensor(y, shape: Shape(n, 1)))
}

/// A 2 → hidden → 3 classifier; `dropout` > 0 inserts a Dropout layer,
/// `layerNorm` a LayerNorm after the first Linear.
func classifier(seed: UInt64, hidden: Int = 16, dropout: Float = 0, layerNorm: Bool = false) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 2, outFeatures: hidden))
    if layerNorm { try m.add(try LayerNorm(features: hidden)) }
    try m.add(Activation(.tanh))
    if dropout > 0 { try m.add(try Dropout(probability: dropout)) }
    try m.add(try Linear(inFeatures: hidden, outFeatures: 3))
    try m.initialize(seed: seed)
    return m
}

func bits(_ t: Tensor?) -> [UInt32] { t?.toArray().map(\.bitPattern) ?? [] }

/// The error `body` throws, as a ParmlError; records an issue otherwise.
func parmlError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> ParmlError? {
    do {
        try body()
        Issue.record("expected an error, none was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let e as ParmlError {
        return e
    } catch {
        Issue.record("expected a ParmlError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}


/// Checks the error's case and that its message mentions each of `parts`.
func expectError(
    _ e: ParmlError?, _ kind: String, mentions parts: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let e else { return }
    #expect(e.kind == kind, "got \(e.kind): \(e.message)", sourceLocation: sourceLocation)
    for p in parts {
        #expect(e.message.contains(p), "message \"\(e.message)\" does not mention \"\(p)\"", sourceLocation: sourceLocation)
    }
}
