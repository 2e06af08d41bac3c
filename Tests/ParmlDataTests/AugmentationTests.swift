import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

/// n images (C, H, W) whose cell (c, y, x) of sample i holds 1 + i·1000 +
/// c·100 + y·10 + x (never 0, so a padded cell shows), target i.
private func images(_ n: Int, c: Int, h: Int, w: Int) throws -> Dataset {
    let x = try Tensor(shape: Shape(n, c, h, w))
    for i in 0..<n {
        for ch in 0..<c {
            for y in 0..<h {
                for xx in 0..<w { x[((i * c + ch) * h + y) * w + xx] = Float(1 + i * 1000 + ch * 100 + y * 10 + xx) }
            }
        }
    }
    return try Dataset(inputs: x, targets: try Tensor((0..<n).map(Float.init), shape: Shape(n)))
}

/// Sample `s`'s image as the definition says, computed the long way: its
/// Philox block (seed, stream 0x8000_0000_0000 | epoch, counter s), the
/// image padded with p zeros into (H+2p, W+2p), the H×W window at (top,
/// left) cut out, then mirrored when the flip bit is set.
private func reference(_ d: Dataset, sample s: Int, epoch: Int, seed: UInt64, padding p: Int, flip: Bool) -> [Float] {
    let (c, h, w) = (d.sampleShape[0], d.sampleShape[1], d.sampleShape[2])
    let stream: UInt64 = 0x8000_0000_0000 | UInt64(epoch)
    let r = Philox(seed: seed).block(UInt32(s), 0, UInt32(truncatingIfNeeded: stream), UInt32(stream >> 32))
    let top = Int(UInt64(r.0) * UInt64(2 * p + 1) / (1 << 32)), left = Int(UInt64(r.1) * UInt64(2 * p + 1) / (1 << 32))
    let mirrored = flip && r.2 >= 1 << 31
    let (ph, pw) = (h + 2 * p, w + 2 * p)
    var out = [Float]()
    for ch in 0..<c {
        var padded = [Float](repeating: 0, count: ph * pw)
        for y in 0..<h {
            for x in 0..<w { padded[(y + p) * pw + x + p] = d.inputs[((s * c + ch) * h + y) * w + x] }
        }
        var crop = [[Float]](repeating: [], count: h)
        for y in 0..<h { crop[y] = (0..<w).map { padded[(y + top) * pw + $0 + left] } }
        for y in 0..<h { out += mirrored ? crop[y].reversed() : crop[y] }
    }
    return out
}

struct AugmentationTests {
    /// Every batch of three epochs, shuffled, against the long-way reference
    /// of each row's sample: the same bits (padding 4: the largest 5×7 images take).
    @Test(arguments: [(2, true), (3, false), (0, true), (4, true)])
    func batchesMatchTheReference(padding: Int, flip: Bool) throws {
        let d = try images(11, c: 2, h: 5, w: 7)
        try d.setAugmentation(try Augmentation(cropPadding: padding, horizontalFlip: flip))
        var batcher = try Batcher(dataset: d, batchSize: 4, shuffle: true, dropLast: false, seed: 9, augment: true)
        let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
        var changed = 0
        for epoch in 0..<3 {
            batcher.startEpoch(epoch)
            for b in 0..<batcher.batchCount {
                let n = try batcher.fill(batch: b, inputs: x, targets: y)
                #expect(x.shape == Shape(n, 2, 5, 7))
                for r in 0..<n {
                    let s = Int(y[r])
                    let got = Array(x.toArray()[(r * 70)..<((r + 1) * 70)])
                    let want = reference(d, sample: s, epoch: epoch, seed: 9, padding: padding, flip: flip)
                    expectEqualElements(got, want, "epoch \(epoch) sample \(s)")
                    if got != Array(d.inputs.toArray()[(s * 70)..<((s + 1) * 70)]) { changed += 1 }
                }
            }
        }
        #expect(changed > 11, "only \(changed) of 33 images were transformed")
    }

    /// A sample's image depends on (seed, epoch, index) only: not on the
    /// batch size, the shuffle or the rows asked for; another epoch or seed
    /// draws others.
    @Test func aSampleDependsOnSeedEpochAndIndexOnly() throws {
        let d = try images(12, c: 1, h: 6, w: 6)
        try d.setAugmentation(try Augmentation(cropPadding: 2, horizontalFlip: true))
        func imagesOfEpoch(_ epoch: Int, seed: UInt64, batchSize: Int, shuffle: Bool) throws -> [Int: [Float]] {
            var batcher = try Batcher(dataset: d, batchSize: batchSize, shuffle: shuffle, dropLast: false, seed: seed, augment: true)
            batcher.startEpoch(epoch)
            var out: [Int: [Float]] = [:]
            let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
            for b in 0..<batcher.batchCount {
                let n = batcher.size(ofBatch: b)
                for r in 0..<n {  // one row at a time: a rank's or micro-batch's share
                    try batcher.fill(batch: b, rows: r..<(r + 1), inputs: x, targets: y)
                    out[Int(y[0])] = x.toArray()
                }
            }
            return out
        }
        let a = try imagesOfEpoch(1, seed: 4, batchSize: 5, shuffle: true)
        #expect(a == (try imagesOfEpoch(1, seed: 4, batchSize: 12, shuffle: false)))
        #expect(a != (try imagesOfEpoch(2, seed: 4, batchSize: 5, shuffle: true)))
        #expect(a != (try imagesOfEpoch(1, seed: 5, batchSize: 5, shuffle: true)))
    }

    /// Offsets cover 0...2p about evenly and half the images flip (4,000
    /// samples: each of the 9 offsets 444 expected, flips 2,000; the bounds
    /// are more than 5 standard deviations wide).
    @Test func drawsAreSpreadEvenly() throws {
        let a = try Augmentation(cropPadding: 4, horizontalFlip: true)
        var tops = [Int](repeating: 0, count: 9), lefts = tops, flips = 0
        for s in 0..<4000 {
            let d = a.draw(seed: 3, epoch: 7, sample: s)
            tops[d.top] += 1
            lefts[d.left] += 1
            flips += d.flip ? 1 : 0
        }
        #expect(tops.allSatisfy { (340...550).contains($0) } && lefts.allSatisfy { (340...550).contains($0) }, "\(tops) \(lefts)")
        #expect((1840...2160).contains(flips), "\(flips) flips")
        #expect(try Augmentation(cropPadding: 4, horizontalFlip: false).draw(seed: 3, epoch: 7, sample: 1).flip == false)
    }

    /// Batches for evaluation (no `augment`) and a dataset without an
    /// augmentation are the dataset's images unchanged.
    @Test func evaluationBatchesAreUnchanged() throws {
        let d = try images(6, c: 3, h: 4, w: 4)
        try d.setAugmentation(try Augmentation(cropPadding: 1, horizontalFlip: true))
        let batcher = try Batcher(dataset: d, batchSize: 6, shuffle: false, dropLast: false, seed: 1)
        let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
        try batcher.fill(batch: 0, inputs: x, targets: y)
        expectEqualElements(x.toArray(), d.inputs.toArray())
        try d.setAugmentation(nil)
        #expect(d.augmentation == nil)
        try d.setAugmentation(try Augmentation(cropPadding: 0, horizontalFlip: false))
        #expect(d.augmentation == nil, "the identity is stored as none")
    }

    @Test func badParametersAreRefused() throws {
        #expect(parmlError { _ = try Augmentation(cropPadding: -1, horizontalFlip: false) }?.message.contains("crop_padding") == true)
        let d = try images(2, c: 1, h: 5, w: 8)
        let e = parmlError { try d.setAugmentation(try Augmentation(cropPadding: 5, horizontalFlip: false)) }
        #expect(e?.message.contains("crop_padding 5 must be below the images' height and width (5x8)") == true, "\(String(describing: e))")
        try d.setAugmentation(try Augmentation(cropPadding: 4, horizontalFlip: false))
        let flat = try Dataset(inputs: try Tensor(shape: Shape(3, 4)), targets: try Tensor(shape: Shape(3)))
        let f = parmlError { try flat.setAugmentation(try Augmentation(cropPadding: 0, horizontalFlip: true)) }
        #expect(f?.message.contains("(C, H, W) or (H, W)") == true, "\(String(describing: f))")
        // (H, W) samples are one-channel images.
        let plain = try Dataset(inputs: try Tensor(shape: Shape(3, 4, 4)), targets: try Tensor(shape: Shape(3)))
        try plain.setAugmentation(try Augmentation(cropPadding: 1, horizontalFlip: true))
    }
}
