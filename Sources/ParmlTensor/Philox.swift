#if canImport(Glibc)
import Glibc
#endif
import _CParmlKernels
/// Philox4x32-10, the counter-based generator of Salmon et al. (SC'11), also
/// used by PyTorch and JAX on accelerators. A counter-based generator makes a
/// random number a pure function of (key, counter): a dropout mask element or
/// an initial weight depends on its own coordinates only, never on how work
/// is split over ranks, threads or micro-batches.
public struct Philox: Sendable {
    public let key: (UInt32, UInt32)

    public init(seed: UInt64) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    /// Four 32-bit random words for the 128-bit counter (c0, c1, c2, c3).
    @inline(__always)
    public func block(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
        var x0 = c0, x1 = c1, x2 = c2, x3 = c3
        var k0 = key.0, k1 = key.1
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(x0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (x0, x1, x2, x3)
    }

    /// A uniform float in [0, 1) for element `index` of stream `stream`: the
    /// value `fillUniform` gives that element (word index & 3 of block index >> 2).
    @inline(__always)
    public func uniform(stream: UInt64, index: UInt64) -> Float {
        let b = index >> 2
        let r = block(
            UInt32(truncatingIfNeeded: b), UInt32(truncatingIfNeeded: b >> 32),
            UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
        switch index & 3 {
        case 0: return Philox.toUnit(r.0)
        case 1: return Philox.toUnit(r.1)
        case 2: return Philox.toUnit(r.2)
        default: return Philox.toUnit(r.3)
        }
    }

    /// Fills `out[0..<count]` with uniforms in [low, high) for elements
    /// `first ..< first+count` of `stream`. Element i always gets the same
    /// value whatever `first` and `count` are (four elements share a block).
    public func fillUniform(
        _ out: UnsafeMutablePointer<Float>, count: Int, stream: UInt64, first: UInt64 = 0,
        low: Float = 0, high: Float = 1
    ) {
        let span = high - low
        var i = 0
        while i < count {
            let e = first &+ UInt64(i)
            let blockIndex = e >> 2
            let r = block(
                UInt32(truncatingIfNeeded: blockIndex), UInt32(truncatingIfNeeded: blockIndex >> 32),
                UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
            var lane = Int(e & 3)
            while lane < 4 && i < count {
                let w: UInt32
                switch lane {
                case 0: w = r.0
                case 1: w = r.1
                case 2: w = r.2
                default: w = r.3
                }
                out[i] = low + span * Philox.toUnit(w)
                lane += 1
                i += 1
            }
        }
    }

    /// Fills `out[0..<count]` with normal draws N(0, std²) for elements
    /// `first ..< first+count` of `stream`: element i is Box–Muller of
    /// uniforms 2i and 2i+1 (its cosine half), so it too depends only on i.
    public func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, stream: UInt64, first: UInt64 = 0, std: Float = 1) {
        for i in 0..<count {
            let e = (first &+ UInt64(i)) &* 2
            // 1 − u is in (0, 1]: the logarithm stays finite.
            let u1 = 1 - Double(uniform(stream: stream, index: e))
            let u2 = Double(uniform(stream: stream, index: e &+ 1))
            out[i] = Float((-2 * Glibc.log(u1)).squareRoot() * Glibc.cos(2 * Double.pi * u2)) * std
        }
    }

    /// Adds normal draws N(0, std²) to `out[0..<count]` for elements
    /// `first ..< first+count` of `stream`, four per block: element i is
    /// Box–Muller of block i/4's words 2⌊(i mod 4)/2⌋ and +1, the cosine
    /// half for even i, the sine half for odd i, computed by a vectorised C
    /// kernel (pml_add_gaussian: polynomial logarithm, sine and cosine, the
    /// same bits on every CPU). Not `fillNormal`'s values: DP-SGD's noise
    /// on every parameter of every step. The radius uses u ∈ (0, 1] at 24
    /// bits: draws stop at about 5.8 std.
    public func addNormal(to out: UnsafeMutablePointer<Float>, count: Int, stream: UInt64, first: UInt64 = 0, std: Float = 1) {
        guard count > 0 else { return }
        pml_add_gaussian(
            out, count, first, key.0, key.1, UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32), std)
    }

    /// 24 random bits scaled to [0, 1): exactly representable floats.
    @inline(__always)
    public static func toUnit(_ w: UInt32) -> Float { Float(w >> 8) * (1.0 / 16_777_216.0) }
}

/// Stream identifiers, so that different uses of one seed never share numbers.
public enum RandomStream {
    /// Initial values of parameter tensor `index` of a model.
    public static func parameter(_ index: Int) -> UInt64 { 0x1000_0000_0000 | UInt64(index) }
    /// Dropout mask of layer `layer` at optimizer step `step`.
    public static func dropout(layer: Int, step: Int) -> UInt64 {
        0x2000_0000_0000 | (UInt64(layer & 0xFFFF) << 28) | UInt64(step & 0xFFF_FFFF)
    }
    /// The shuffling permutation of epoch `epoch`.
    public static func shuffle(epoch: Int) -> UInt64 { 0x3000_0000_0000 | UInt64(epoch) }
    /// Sampling during generation: draw k of a generate call is element k.
    public static let sampling: UInt64 = 0x4000_0000_0000
    /// The starts of a token dataset's random windows in epoch `epoch`.
    public static func tokenWindows(epoch: Int) -> UInt64 { 0x5000_0000_0000 | UInt64(epoch) }
    /// The rows of class `group` a dataset split sends to validation (group
    /// 0 for a split that ignores classes, c + 1 for class c).
    public static func split(group: Int) -> UInt64 { 0x6000_0000_0000 | UInt64(group) }
    /// The samples a weighted sampler draws in epoch `epoch`.
    public static func weightedSampling(epoch: Int) -> UInt64 { 0x7000_0000_0000 | UInt64(epoch) }
    /// The crop offsets and flips of epoch `epoch`'s augmented images: sample s is block s.
    public static func augmentation(epoch: Int) -> UInt64 { 0x8000_0000_0000 | UInt64(epoch) }
    /// PowerSGD's first Q matrices (every rank draws the same).
    public static let powerSGD: UInt64 = 0x9000_0000_0000
}
