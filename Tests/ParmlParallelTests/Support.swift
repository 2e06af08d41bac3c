import ParmlTensor
import Testing

@testable import ParmlParallel

#if canImport(Glibc)
import Glibc
#endif

/// Per-rank results: rank r writes only element r, the host reads after
/// `RankPool.run` returned (the pool's mutex orders the accesses).
/// `@unchecked Sendable` for exactly that reason.
final class PerRank<T>: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<T?>

    init(_ n: Int) {
        storage = .allocate(capacity: n)
        storage.initialize(repeating: nil)
    }

    deinit {
        _ = storage.deinitialize()
        storage.deallocate()
    }

    subscript(_ r: Int) -> T? {
        get { storage[r] }
        set { storage[r] = newValue }
    }

    var all: [T?] { Array(storage) }
}

/// A float buffer of `count` elements (never a nil base address, even for 0).
final class FloatBuffer: @unchecked Sendable {
    let count: Int
    let pointer: UnsafeMutablePointer<Float>

    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(1, count))
        for i in 0..<count { pointer[i] = values[i] }
    }

    init(count: Int, value: Float) {
        self.count = count
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: value, count: max(1, count))
    }

    deinit { pointer.deallocate() }

    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    func set(_ values: [Float]) {
        precondition(values.count == count)
        for i in 0..<count { pointer[i] = values[i] }
    }
}

/// splitmix64: reproducible test data without depending on other modules.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Values of rank `rank`: signs and magnitudes spread over 2^-12...2^12, so
/// that a different order of additions gives different bits.
func rankValues(rank: Int, count: Int, seed: UInt64 = 1) -> [Float] {
    var g = SplitMix(state: seed &* 1_000_003 &+ UInt64(rank) &* 7919)
    return (0..<count).map { _ in
        let bits = g.next()
        let mantissa = Float(bits >> 40) / Float(1 << 24)  // [0, 1)
        let exponent = Int((bits >> 8) & 0x1F) - 12
        let sign: Float = bits & 1 == 0 ? 1 : -1
        return sign * (0.5 + mantissa) * Float(sign: .plus, exponent: exponent, significand: 1)
    }
}

/// The definition: acc = x0; acc += x1; ...; (× 1/size for mean).
func referenceReduce(_ inputs: [[Float]], mean: Bool) -> [Float] {
    var acc = inputs[0]
    for r in 1..<inputs.count {
        for i in acc.indices { acc[i] += inputs[r][i] }
    }
    if mean {
        let s = 1 / Float(inputs.count)
        for i in acc.indices { acc[i] *= s }
    }
    return acc
}

/// nil when bitwise equal, else where they first differ.
func bitwiseDifference(_ got: [Float], _ want: [Float], _ what: String) -> String? {
    guard got.count == want.count else { return "\(what): \(got.count) elements, expected \(want.count)" }
    for i in got.indices where got[i].bitPattern != want[i].bitPattern {
        return "\(what): element \(i) is \(got[i]), expected \(want[i])"
    }
    return nil
}

func sleepMicroseconds(_ us: Int) {
    if us > 0 { usleep(UInt32(us)) }
}

func elapsedSeconds(since start: Int) -> Double { Double(monotonicNanoseconds() - start) / 1e9 }

/// The parent of every suite here: serialized (recursively), because the
/// failure tests measure deadlines and every test runs 2-4 rank threads on
/// a 2-core machine.
@Suite(.serialized) struct ParallelTests {}
