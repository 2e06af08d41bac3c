// Helpers shared by the Swift test targets (no stability promise: the
// leading underscore says so). One copy instead of one per target.
import ParmlTensor
import Testing

/// `n` uniforms in [low, high) from Philox(seed), stream `stream`: test data
/// that is the same on every run and every machine.
public func randomArray(_ n: Int, seed: UInt64, stream: UInt64 = 0, low: Float = -1, high: Float = 1) -> [Float] {
    var a = [Float](repeating: 0, count: n)
    guard n > 0 else { return a }
    a.withUnsafeMutableBufferPointer {
        Philox(seed: seed).fillUniform($0.baseAddress!, count: n, stream: stream, low: low, high: high)
    }
    return a
}

/// Largest |a[i] − b[i]| (infinity when the lengths differ).
public func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    var m = 0.0
    for i in a.indices { m = maxNaN(m, abs(Double(a[i]) - Double(b[i]))) }
    return m
}

/// max that propagates NaN (Swift's max(0, .nan) is 0, which would hide a NaN result).
public func maxNaN(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .nan : max(a, b) }

/// The error `body` throws, as a ParmlError; records an issue otherwise.
public func parmlError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> ParmlError? {
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
public func expectError(
    _ e: ParmlError?, _ kind: String, mentions parts: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let e else { return }
    #expect(e.kind == kind, "got \(e.kind): \(e.message)", sourceLocation: sourceLocation)
    for p in parts {
        #expect(e.message.contains(p), "message \"\(e.message)\" does not mention \"\(p)\"", sourceLocation: sourceLocation)
    }
}
