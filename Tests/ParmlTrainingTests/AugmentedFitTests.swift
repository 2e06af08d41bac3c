import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// fit with an augmented dataset: the images of a batch depend on (seed,
// epoch, sample) only, so every layout trains on the same ones, and
// deterministic mode keeps data parallelism and pipelines bit for bit
// equal to serial training; evaluation sees the images as they are.

/// 48 random (1, 8, 8) images in [0, 1), labels i mod 3.
private func imageData(augment: Bool) throws -> Dataset {
    let n = 48
    let d = try Dataset(
        inputs: try Tensor(randomArray(n * 64, seed: 12, low: 0, high: 1), shape: Shape(n, 1, 8, 8)),
        targets: try Tensor((0..<n).map { Float($0 % 3) }, shape: Shape(n)))
    if augment { try d.setAugmentation(try Augmentation(cropPadding: 2, horizontalFlip: true)) }
    return d
}

/// conv(1→4, 3×3, pad 1) ReLU MaxPool2 Flatten Linear(64→3).
private func smallCNN() throws -> Model {
    let m = Model()
    try m.add(try Conv2d(inChannels: 1, outChannels: 4, kernel: (3, 3), padding: (1, 1), backend: .im2col))
    try m.add(Activation(.relu))
    try m.add(try MaxPool2d(kernel: (2, 2)))
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 64, outFeatures: 3))
    try m.initialize(seed: 8)
    return m
}

/// Parameters after fit calls of `epochs` epochs each (batches of 16).
private func fitCNN(augment: Bool, dp: Int = 1, pp: Int = 1, m: Int = 1, zero: Int = 0, epochs: [Int] = [2]) throws -> [UInt32] {
    var s = StrategyConfig()
    (s.dp, s.pp, s.microBatches, s.zeroStage) = (dp, pp, m, zero)
    s.deterministic = true
    s.gradientChunk = 8
    s.seed = 3
    s.blasThreads = 1
    var o = OptimizerConfig()
    o.learningRate = 0.05
    o.momentum = 0.9
    let model = try smallCNN()
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: s)
    let data = try imageData(augment: augment)
    for e in epochs {
        var f = FitOptions()
        f.epochs = e
        f.batchSize = 16
        try t.fit(data, options: f)
    }
    return bits(model.parameters)
}

struct AugmentedFitTests {
    @Test func everyLayoutTrainsOnTheSameImages() throws {
        let serial = try fitCNN(augment: true)
        #expect(serial != (try fitCNN(augment: false)), "augmentation changed nothing")
        let layouts: [(dp: Int, pp: Int, m: Int, zero: Int)] = [(2, 1, 1, 0), (1, 2, 2, 0), (2, 2, 2, 1)]
        for l in layouts {
            expectSameBits(
                try fitCNN(augment: true, dp: l.dp, pp: l.pp, m: l.m, zero: l.zero).map { Float(bitPattern: $0) },
                serial.map { Float(bitPattern: $0) }, "dp=\(l.dp) pp=\(l.pp) m=\(l.m) zero=\(l.zero)")
        }
        // Epoch e's images are drawn for e, however many fit calls led there.
        expectSameBits(
            try fitCNN(augment: true, epochs: [1, 1]).map { Float(bitPattern: $0) }, serial.map { Float(bitPattern: $0) },
            "two fit calls of one epoch")
    }

    @Test func evaluationSeesTheImagesUnchanged() throws {
        var s = StrategyConfig()
        s.blasThreads = 1
        let t = try Trainer(model: try smallCNN(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        let plain = try t.evaluate(try imageData(augment: false), batchSize: 16)
        let augmented = try t.evaluate(try imageData(augment: true), batchSize: 16)
        #expect(plain.loss.bitPattern == augmented.loss.bitPattern && plain.correct == augmented.correct)
    }
}
