import ParmlTensor

// Augmentation of image samples as batches are formed for training (never
// in evaluation): torchvision's RandomCrop(size = the image's, padding = p)
// then RandomHorizontalFlip(). Shapes: a sample (C, H, W), or (H, W) as one
// channel; the batch (N, C, H, W) is transformed in place, plane by plane.
//
// The draws of sample s in epoch e are one Philox block under the run's
// seed, at counter s of stream RandomStream.augmentation(epoch: e):
//   words (w0, w1, w2, w3); top = ⌊w0·(2p+1) / 2^32⌋, left = ⌊w1·(2p+1) / 2^32⌋
//   (each in 0...2p; multiply-shift, off uniform by under (2p+1)/2^32),
//   flip = the top bit of w2 (when flipping is on).
// So an image's transform depends on (seed, epoch, s) alone: every layout
// (serial, dp, pp, MPI processes) and every resumed run sees the same images.
//
// Output cell (y, x) of a plane, with x' = W−1−x when flipped (else x):
//   out[y][x] = in[y + top − p][x' + left − p], 0 outside the image.

/// Random crop with zero padding and horizontal flip of image samples.
public struct Augmentation: Sendable, Equatable {
    /// p: zeros added on each side before a crop back to the image's size; 0 = no crop.
    public let cropPadding: Int
    /// Mirror left–right with probability 1/2.
    public let horizontalFlip: Bool

    public init(cropPadding: Int, horizontalFlip: Bool) throws {
        guard cropPadding >= 0 else { throw ParmlError.invalidArgument("crop_padding must be 0 or positive, got \(cropPadding)") }
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
    }

    /// Transforms nothing: the default.
    public static let none = Augmentation(uncheckedPadding: 0, horizontalFlip: false)

    private init(uncheckedPadding: Int, horizontalFlip: Bool) {
        cropPadding = uncheckedPadding
        self.horizontalFlip = horizontalFlip
    }

    /// Transforms nothing.
    public var isIdentity: Bool { cropPadding == 0 && !horizontalFlip }

    /// (height, width) of the images of `sampleShape`, (C, H, W) or (H, W),
    /// or an error when this augmentation cannot transform them.
    public func planeSize(of sampleShape: Shape) throws -> (height: Int, width: Int) {
        guard sampleShape.rank == 2 || sampleShape.rank == 3 else {
            throw ParmlError.shape("augmentation takes image samples (C, H, W) or (H, W), got samples of shape \(sampleShape)")
        }
        let h = sampleShape[sampleShape.rank - 2], w = sampleShape[sampleShape.rank - 1]
        // A padding of the image's size could crop an image of zeros only.
        guard cropPadding < min(h, w) else {
            throw ParmlError.invalidArgument("crop_padding \(cropPadding) must be below the images' height and width (\(h)x\(w))")
        }
        return (h, w)
    }

    /// One sample's crop offsets (each in 0...2p) and flip.
    public struct Draw: Sendable, Equatable {
        public let top: Int
        public let left: Int
        public let flip: Bool
    }

    /// What sample `sample` of epoch `epoch` draws under `seed`.
    @inline(__always)
    public func draw(seed: UInt64, epoch: Int, sample: Int) -> Draw {
        let stream = RandomStream.augmentation(epoch: epoch), s = UInt64(sample)
        let r = Philox(seed: seed).block(
            UInt32(truncatingIfNeeded: s), UInt32(truncatingIfNeeded: s >> 32),
            UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
        let span = UInt64(2 * cropPadding + 1)
        return Draw(top: Int((UInt64(r.0) * span) >> 32), left: Int((UInt64(r.1) * span) >> 32), flip: horizontalFlip && r.2 >> 31 == 1)
    }

    /// Transforms row r of `inputs` (N, C, H, W) or (N, H, W), which holds
    /// sample `samples[r]` of epoch `epoch`, in place. `scratch` holds H·W
    /// floats (one plane's copy).
    public func apply(
        to inputs: Tensor, samples: UnsafeBufferPointer<Int>, epoch: Int, seed: UInt64, scratch: UnsafeMutablePointer<Float>
    ) {
        let rank = inputs.shape.rank
        let h = inputs.shape[rank - 2], w = inputs.shape[rank - 1], plane = h * w
        let planes = samples.count == 0 ? 0 : inputs.count / (samples.count * plane)
        let p = cropPadding
        for (r, s) in samples.enumerated() {
            let d = draw(seed: seed, epoch: epoch, sample: s)
            guard d.top != p || d.left != p || d.flip else { continue }
            let dy = d.top - p, dx = d.left - p
            for c in 0..<planes {
                let out = inputs.data + (r * planes + c) * plane
                scratch.update(from: out, count: plane)
                for y in 0..<h {
                    let row = out + y * w
                    let sy = y + dy
                    guard sy >= 0, sy < h else {
                        row.update(repeating: 0, count: w)
                        continue
                    }
                    // Output columns lo..<hi read inside the image (sx = x + dx, or
                    // W−1−x + dx flipped); the rest are padding. |dx| ≤ p < W: lo < hi.
                    let src = scratch + sy * w
                    let lo = d.flip ? max(0, dx) : max(0, -dx), hi = d.flip ? min(w, w + dx) : min(w, w - dx)
                    row.update(repeating: 0, count: lo)
                    (row + hi).update(repeating: 0, count: w - hi)
                    if d.flip {
                        for x in lo..<hi { row[x] = src[w - 1 - x + dx] }
                    } else {
                        (row + lo).update(from: src + lo + dx, count: hi - lo)
                    }
                }
            }
        }
    }
}
