import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

/// n samples whose input row i is (i, i + 0.25, i + 0.5) and target 10·i, so
/// a filled batch says which samples it holds and that rows stayed whole.
func indexedDataset(_ n: Int) throws -> Dataset {
    let x = try Tensor(shape: Shape(n, 3))
    let y = try Tensor(shape: Shape(n))
    for i in 0..<n {
        x[3 * i] = Float(i)
        x[3 * i + 1] = Float(i) + 0.25
        x[3 * i + 2] = Float(i) + 0.5
        y[i] = Float(10 * i)
    }
    return try Dataset(inputs: x, targets: y)
}

/// Sample indices of one filled batch, checking each row against its target.
func samples(inputs: Tensor, targets: Tensor, rows b: Int, sourceLocation: SourceLocation = #_sourceLocation) -> [Int] {
    (0..<b).map { r in
        let i = inputs[3 * r]
        #expect(inputs[3 * r + 1] == i + 0.25, sourceLocation: sourceLocation)
        #expect(inputs[3 * r + 2] == i + 0.5, sourceLocation: sourceLocation)
        #expect(targets[r] == 10 * i, sourceLocation: sourceLocation)
        return Int(i)
    }
}

/// Every batch of the current epoch, in order.
func epochBatches(_ batcher: Batcher) throws -> [[Int]] {
    let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
    return try (0..<batcher.batchCount).map { k in
        let b = try batcher.fill(batch: k, inputs: x, targets: y)
        #expect(x.shape == Shape(b, 3))
        #expect(y.shape == Shape(b))
        return samples(inputs: x, targets: y, rows: b)
    }
}

@Suite struct BatcherTests {
    @Test func rejectsBadBatchSizes() throws {
        let d = try indexedDataset(5)
        expectError(
            parmlError { _ = try Batcher(dataset: d, batchSize: 0, shuffle: false, dropLast: false, seed: 1) },
            "invalidArgument", mentions: ["0"])
        expectError(
            parmlError { _ = try Batcher(dataset: d, batchSize: 6, shuffle: true, dropLast: true, seed: 1) },
            "invalidArgument", mentions: ["6", "5"])
        // Without dropLast a batch larger than the dataset is one partial batch.
        let b = try Batcher(dataset: d, batchSize: 6, shuffle: false, dropLast: false, seed: 1)
        #expect(b.batchCount == 1)
        #expect(try epochBatches(b) == [[0, 1, 2, 3, 4]])
    }

    @Test(arguments: [false, true])
    func everySampleOncePerEpoch(shuffle: Bool) throws {
        var b = try Batcher(dataset: try indexedDataset(10), batchSize: 3, shuffle: shuffle, dropLast: false, seed: 42)
        #expect(b.batchCount == 4)
        for epoch in 0..<5 {
            b.startEpoch(epoch)
            let batches = try epochBatches(b)
            #expect(batches.map(\.count) == [3, 3, 3, 1])
            let seen = batches.flatMap { $0 }
            expectEqualElements(seen.sorted(), Array(0..<10))
            expectEqualElements(seen, b.sampleOrder)
            if !shuffle { expectEqualElements(seen, Array(0..<10)) }
        }
    }

    @Test(arguments: [false, true])
    func dropLastSkipsThePartialBatch(shuffle: Bool) throws {
        let b = try Batcher(dataset: try indexedDataset(10), batchSize: 3, shuffle: shuffle, dropLast: true, seed: 7)
        #expect(b.batchCount == 3)
        let seen = try epochBatches(b).flatMap { $0 }
        #expect(seen.count == 9)
        #expect(Set(seen).count == 9)
        expectEqualElements(seen, Array(b.sampleOrder.prefix(9)))
        expectError(parmlError { _ = try b.fill(batch: 3, inputs: Tensor(shape: Shape(1)), targets: Tensor(shape: Shape(1))) }, "invalidArgument", mentions: ["3"])

        let exact = try Batcher(dataset: try indexedDataset(9), batchSize: 3, shuffle: shuffle, dropLast: true, seed: 7)
        #expect(exact.batchCount == 3)
    }

    @Test func orderIsAPureFunctionOfSeedAndEpoch() throws {
        let d = try indexedDataset(50)
        var a = try Batcher(dataset: d, batchSize: 8, shuffle: true, dropLast: false, seed: 1234)
        var b = try Batcher(dataset: d, batchSize: 8, shuffle: true, dropLast: false, seed: 1234)
        var c = try Batcher(dataset: d, batchSize: 8, shuffle: true, dropLast: false, seed: 1235)

        a.startEpoch(3)
        b.startEpoch(3)
        c.startEpoch(3)
        expectEqualElements(a.sampleOrder, b.sampleOrder)
        #expect(try epochBatches(a) == epochBatches(b))
        #expect(a.sampleOrder != c.sampleOrder)
        #expect(a.sampleOrder != Array(0..<50))

        let epoch3 = a.sampleOrder
        a.startEpoch(4)
        #expect(a.sampleOrder != epoch3)
        expectEqualElements(a.sampleOrder.sorted(), Array(0..<50))
        // Going back reproduces the order: it never depends on the previous epoch.
        a.startEpoch(3)
        expectEqualElements(a.sampleOrder, epoch3)
        // Independent of the batch size too.
        var other = try Batcher(dataset: d, batchSize: 5, shuffle: true, dropLast: true, seed: 1234)
        other.startEpoch(3)
        expectEqualElements(other.sampleOrder, epoch3)
    }

    @Test func initStartsEpochZero() throws {
        let d = try indexedDataset(20)
        let fresh = try Batcher(dataset: d, batchSize: 4, shuffle: true, dropLast: false, seed: 9)
        var reset = try Batcher(dataset: d, batchSize: 4, shuffle: true, dropLast: false, seed: 9)
        reset.startEpoch(5)
        reset.startEpoch(0)
        #expect(fresh.epoch == 0)
        expectEqualElements(fresh.sampleOrder, reset.sampleOrder)
    }

    /// Over many epochs every permutation of 3 samples shows up about equally
    /// often (deterministic given the seed, so not flaky).
    @Test func shuffleIsRoughlyUniform() throws {
        var b = try Batcher(dataset: try indexedDataset(3), batchSize: 3, shuffle: true, dropLast: false, seed: 2024)
        var counts: [[Int]: Int] = [:]
        for e in 0..<1200 {
            b.startEpoch(e)
            counts[b.sampleOrder, default: 0] += 1
        }
        #expect(counts.count == 6)
        for (perm, k) in counts { #expect(k > 140 && k < 260, "\(perm) appeared \(k) times of 1200") }
    }

    @Test func fillWritesTheRowsOfTheOrder() throws {
        let n = 37
        let x = try Tensor(shape: Shape(n, 2, 2))
        let y = try Tensor(shape: Shape(n, 2))
        for i in 0..<(4 * n) { x[i] = Float(i) }
        for i in 0..<(2 * n) { y[i] = -Float(i) }
        var b = try Batcher(dataset: try Dataset(inputs: x, targets: y), batchSize: 8, shuffle: true, dropLast: false, seed: 5)
        b.startEpoch(2)
        let bx = try Tensor(shape: Shape(1)), by = try Tensor(shape: Shape(1))
        for k in 0..<b.batchCount {
            let rows = try b.fill(batch: k, inputs: bx, targets: by)
            #expect(rows == (k < 4 ? 8 : 5))
            #expect(rows == b.size(ofBatch: k))
            #expect(bx.shape == Shape(rows, 2, 2))
            #expect(by.shape == Shape(rows, 2))
            for r in 0..<rows {
                let s = b.sampleOrder[8 * k + r]
                for j in 0..<4 { #expect(bx[4 * r + j] == x[4 * s + j]) }
                for j in 0..<2 { #expect(by[2 * r + j] == y[2 * s + j]) }
            }
        }
    }

    @Test func fillRowsIsASliceOfTheBatch() throws {
        var b = try Batcher(dataset: try indexedDataset(23), batchSize: 10, shuffle: true, dropLast: false, seed: 3)
        b.startEpoch(1)
        let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
        let whole = try epochBatches(b)
        for k in 0..<b.batchCount {
            let size = b.size(ofBatch: k)
            var parts: [Int] = []
            var lo = 0
            while lo < size {
                let hi = min(lo + 4, size)
                try b.fill(batch: k, rows: lo..<hi, inputs: x, targets: y)
                #expect(x.shape == Shape(hi - lo, 3))
                parts += samples(inputs: x, targets: y, rows: hi - lo)
                lo = hi
            }
            #expect(parts == whole[k])
        }
        expectError(parmlError { try b.fill(batch: 2, rows: 0..<4, inputs: x, targets: y) }, "invalidArgument", mentions: ["3 rows"])
        expectError(parmlError { try b.fill(batch: 0, rows: 5..<5, inputs: x, targets: y) }, "invalidArgument")
    }

    @Test func fillRejectsOutOfRangeBatchesAndAliasing() throws {
        let d = try indexedDataset(6)
        let b = try Batcher(dataset: d, batchSize: 4, shuffle: false, dropLast: false, seed: 0)
        let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
        expectError(parmlError { _ = try b.fill(batch: -1, inputs: x, targets: y) }, "invalidArgument")
        expectError(parmlError { _ = try b.fill(batch: 2, inputs: x, targets: y) }, "invalidArgument", mentions: ["2"])
        expectError(parmlError { _ = try b.fill(batch: 0, inputs: d.inputs, targets: y) }, "invalidArgument")
        expectError(parmlError { _ = try b.fill(batch: 0, inputs: x, targets: x) }, "invalidArgument")
    }

    /// Steady state reuses the batch tensors' memory: after the first full
    /// batch no fill reallocates, the smaller last batch included.
    @Test func fillReusesTheBatchTensors() throws {
        var b = try Batcher(dataset: try indexedDataset(30), batchSize: 8, shuffle: true, dropLast: false, seed: 11)
        let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
        try b.fill(batch: 0, inputs: x, targets: y)
        let px = x.data, py = y.data
        for epoch in 1..<4 {
            b.startEpoch(epoch)
            for k in 0..<b.batchCount {
                try b.fill(batch: k, inputs: x, targets: y)
                #expect(x.data == px)
                #expect(y.data == py)
            }
        }
    }

    @Test func singleSampleDataset() throws {
        var b = try Batcher(dataset: try indexedDataset(1), batchSize: 4, shuffle: true, dropLast: false, seed: 1)
        b.startEpoch(7)
        #expect(try epochBatches(b) == [[0]])
    }
}
