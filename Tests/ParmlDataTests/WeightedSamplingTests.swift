import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

@Suite struct WeightedSamplingTests {
    /// Draw frequencies follow the weights: 4 samples weighted 1, 2, 0, 5
    /// over 200 epochs of 4 draws (800 draws). Each count is binomial; the
    /// bound, 4.5 standard deviations, fails by chance about once in 10^5 runs,
    /// and the draws are seeded, so the test either always passes or never.
    @Test func frequenciesFollowTheWeights() throws {
        let w: [Double] = [1, 2, 0, 5]
        var b = try Batcher(dataset: try indexedDataset(4), batchSize: 4, shuffle: true, dropLast: false, seed: 11, sampleWeights: w)
        var counts = [0, 0, 0, 0]
        for e in 0..<200 {
            b.startEpoch(e)
            for s in b.sampleOrder { counts[s] += 1 }
        }
        #expect(counts[2] == 0, "a sample of weight 0 was drawn \(counts[2]) times")
        for i in [0, 1, 3] {
            let p = w[i] / 8, mean = 800 * p, sd = (800 * p * (1 - p)).squareRoot()
            #expect(abs(Double(counts[i]) - mean) <= 4.5 * sd, "sample \(i): \(counts[i]) draws, expected \(mean) ± \(sd)")
        }
    }

    /// The draws of an epoch are a function of (seed, epoch) alone.
    @Test func drawsArePureFunctionsOfSeedAndEpoch() throws {
        let d = try indexedDataset(50), w = (0..<50).map { Double($0 % 3) + 0.5 }
        var a = try Batcher(dataset: d, batchSize: 8, shuffle: false, dropLast: false, seed: 3, sampleWeights: w)
        var b = try Batcher(dataset: d, batchSize: 8, shuffle: false, dropLast: false, seed: 3, sampleWeights: w)
        a.startEpoch(5)
        b.startEpoch(2)
        b.startEpoch(5)
        expectEqualElements(a.sampleOrder, b.sampleOrder)
        b.startEpoch(6)
        #expect(a.sampleOrder != b.sampleOrder)
        // With replacement: some sample repeats in 50 draws of 50.
        #expect(Set(a.sampleOrder).count < 50)
    }

    @Test func badWeightsAreRefused() throws {
        let d = try indexedDataset(3)
        for (w, says) in [([1.0, 2], "2 sample weights"), ([1, -1, 1], "sample weight 1"), ([1, .nan, 1], "finite"), ([0, 0, 0], "every")] {
            expectError(
                parmlError { _ = try Batcher(dataset: d, batchSize: 2, shuffle: true, dropLast: false, seed: 0, sampleWeights: w) },
                "invalidArgument", mentions: [says])
        }
    }
}
