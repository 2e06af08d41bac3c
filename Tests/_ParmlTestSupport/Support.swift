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

/// Checks `a == b` element by element, as `#expect(a == b)` would, but a
/// failure says how many elements differ and where the first does:
/// swift-testing diffs two failed collections (O(n·d)), which ran for over
/// half an hour on two long arrays of floats that differed everywhere.
public func expectEqualElements<A: RandomAccessCollection, B: RandomAccessCollection>(
    _ a: A, _ b: B, _ comment: @autoclosure () -> Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) where A.Element: Equatable, A.Element == B.Element {
    guard let difference = elementDifference(a, b) else { return }
    let what = comment().map { "\($0.rawValue): " } ?? ""
    Issue.record("\(what)\(difference)", sourceLocation: sourceLocation)
}

/// Checks that two float arrays hold the same bits (NaNs and signed zeros
/// included), reporting a failure as `expectEqualElements` does.
public func expectSameBits(
    _ a: [Float], _ b: [Float], _ comment: @autoclosure () -> Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard var difference = elementDifference(a.lazy.map(\.bitPattern), b.lazy.map(\.bitPattern)) else { return }
    if let i = (0..<min(a.count, b.count)).first(where: { a[$0].bitPattern != b[$0].bitPattern }) {
        difference += " (as floats \(a[i]) against \(b[i]))"
    }
    let what = comment().map { "\($0.rawValue): " } ?? ""
    Issue.record("\(what)\(difference)", sourceLocation: sourceLocation)
}

/// Why `a` and `b` differ ("3 of 1000 elements differ; the first at 17:
/// 0.25 against 0.5"), or nil when they are equal.
public func elementDifference<A: RandomAccessCollection, B: RandomAccessCollection>(_ a: A, _ b: B) -> String?
where A.Element: Equatable, A.Element == B.Element {
    var differing = 0
    var first: (index: Int, a: A.Element, b: A.Element)?
    for (i, (x, y)) in zip(a, b).enumerated() where x != y {
        differing += 1
        if first == nil { first = (i, x, y) }
    }
    let (na, nb) = (a.count, b.count)
    guard differing > 0 || na != nb else { return nil }
    var text = na == nb ? "\(differing) of \(na) elements differ" : "\(na) elements against \(nb); \(differing) of the first \(min(na, nb)) differ"
    if let first { text += "; the first at \(first.index): \(first.a) against \(first.b)" }
    return text
}
