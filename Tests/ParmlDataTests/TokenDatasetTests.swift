import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

/// ids[i] = i: a window's values say where it starts.
func countingIDs(_ n: Int) throws -> Tensor {
    let t = try Tensor(shape: Shape(n), dtype: .int32)
    for i in 0..<n { t.int32s[i] = Int32(i) }
    return t
}

/// The window starts of one filled batch of a counting dataset, checking
/// that each row is a contiguous slice and its targets the next tokens.
func windowStarts(
    inputs: Tensor, targets: Tensor, blockSize t: Int, sourceLocation: SourceLocation = #_sourceLocation
) -> [Int] {
    #expect(inputs.dtype == .float32 && targets.dtype == .int32, sourceLocation: sourceLocation)
    return (0..<inputs.shape[0]).map { r in
        let s = Int(inputs.data[r * t])
        for k in 0..<t {
            #expect(inputs.data[r * t + k] == Float(s + k), sourceLocation: sourceLocation)
            #expect(targets.int32s[r * t + k] == Int32(s + k + 1), sourceLocation: sourceLocation)
        }
        return s
    }
}

/// Every window start of the batcher's current epoch, batch by batch.
func epochStarts(_ b: Batcher, blockSize t: Int) throws -> [Int] {
    let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
    var out: [Int] = []
    for k in 0..<b.batchCount {
        let n = try b.fill(batch: k, inputs: x, targets: y)
        #expect(x.shape == Shape(n, t) && y.shape == Shape(n, t))
        out += windowStarts(inputs: x, targets: y, blockSize: t)
    }
    return out
}

@Suite struct TokenDatasetTests {
    @Test func randomWindowsAreSlicesWithTargetsShiftedByOne() throws {
        let d = try TokenDataset(ids: countingIDs(50), blockSize: 4, mode: .random, seed: 7)
        #expect(d.count == 12)  // (50 - 1) / 4
        #expect(d.inputShape == Shape(12, 4))
        #expect(d.numClasses == 50)
        var b = try Batcher(dataset: d, batchSize: 5, shuffle: false, dropLast: false, seed: 0)
        for epoch in 0..<3 {
            b.startEpoch(epoch)
            let starts = try epochStarts(b, blockSize: 4)
            expectEqualElements(starts, (0..<12).map { d.start(ofSample: $0, epoch: epoch) })
            #expect(starts.allSatisfy { $0 >= 0 && $0 <= 50 - 4 - 1 })
        }
    }

    @Test func randomStartsDependOnSeedEpochAndSampleOnly() throws {
        let ids = try countingIDs(1000)
        let a = try TokenDataset(ids: ids, blockSize: 8, mode: .random, seed: 1234, windows: 40)
        let same = try TokenDataset(ids: ids, blockSize: 8, mode: .random, seed: 1234, windows: 40)
        let other = try TokenDataset(ids: ids, blockSize: 8, mode: .random, seed: 1235, windows: 40)
        let starts = (0..<40).map { a.start(ofSample: $0, epoch: 3) }
        expectEqualElements(starts, (0..<40).map { same.start(ofSample: $0, epoch: 3) })
        #expect(starts != (0..<40).map { other.start(ofSample: $0, epoch: 3) })
        #expect(starts != (0..<40).map { a.start(ofSample: $0, epoch: 4) })

        // A batch of 16 filled whole, or in rows as data-parallel ranks and
        // micro-batches take it, or cut into batches of another size: the
        // same windows for the same global sample index.
        var whole = try Batcher(dataset: a, batchSize: 16, shuffle: false, dropLast: false, seed: 0)
        whole.startEpoch(3)
        expectEqualElements(try epochStarts(whole, blockSize: 8), starts)
        let x = try Tensor(shape: Shape(1)), y = try Tensor(shape: Shape(1))
        var parts: [Int] = []
        for k in 0..<whole.batchCount {
            var lo = 0
            while lo < whole.size(ofBatch: k) {
                let hi = min(lo + 3, whole.size(ofBatch: k))
                try whole.fill(batch: k, rows: lo..<hi, inputs: x, targets: y)
                parts += windowStarts(inputs: x, targets: y, blockSize: 8)
                lo = hi
            }
        }
        expectEqualElements(parts, starts)
        var small = try Batcher(dataset: a, batchSize: 7, shuffle: false, dropLast: false, seed: 0)
        small.startEpoch(3)
        expectEqualElements(try epochStarts(small, blockSize: 8), starts)
    }

    @Test func randomStartsAreUniformOverEveryStart() throws {
        // N - T = 10 possible starts, 20,000 draws: each count is 2,000 ± 42
        // (one standard deviation); 1,800...2,200 is beyond 4.7 of them.
        let d = try TokenDataset(ids: countingIDs(13), blockSize: 3, mode: .random, seed: 99, windows: 20_000)
        var counts = [Int](repeating: 0, count: 10)
        for j in 0..<d.count { counts[d.start(ofSample: j, epoch: 0)] += 1 }
        #expect(counts.allSatisfy { $0 >= 1800 && $0 <= 2200 }, "counts \(counts)")
    }

    @Test(arguments: [false, true])
    func sequentialWindowsCoverTheDataOncePerEpoch(shuffle: Bool) throws {
        let d = try TokenDataset(ids: countingIDs(43), blockSize: 5, mode: .sequential, seed: 0)
        #expect(d.count == 8)  // (43 - 1) / 5: the last target is id 40
        var b = try Batcher(dataset: d, batchSize: 3, shuffle: shuffle, dropLast: false, seed: 5)
        var orders: [[Int]] = []
        for epoch in 0..<2 {
            b.startEpoch(epoch)
            let starts = try epochStarts(b, blockSize: 5)
            #expect(starts.sorted() == [0, 5, 10, 15, 20, 25, 30, 35])
            orders.append(starts)
        }
        #expect((orders[0] != orders[1]) == shuffle)
        #expect(shuffle || orders[0] == [0, 5, 10, 15, 20, 25, 30, 35])
    }

    @Test func rejectsBadInput() throws {
        let ids = try countingIDs(10)
        expectError(parmlError { _ = try TokenDataset(ids: ids, blockSize: 0, mode: .random, seed: 0) }, "invalidArgument", mentions: ["0"])
        expectError(
            parmlError { _ = try TokenDataset(ids: ids, blockSize: 10, mode: .random, seed: 0) }, "invalidArgument",
            mentions: ["10 token ids", "11"])
        #expect(try TokenDataset(ids: ids, blockSize: 9, mode: .sequential, seed: 0).count == 1)
        expectError(
            parmlError { _ = try TokenDataset(ids: ids, blockSize: 2, mode: .random, seed: 0, windows: 0) }, "invalidArgument")
        expectError(
            parmlError { _ = try TokenDataset(ids: ids, blockSize: 2, mode: .sequential, seed: 0, windows: 3) }, "invalidArgument",
            mentions: ["random mode"])
        ids.int32s[4] = -1
        expectError(parmlError { _ = try TokenDataset(ids: ids, blockSize: 2, mode: .random, seed: 0) }, "invalidArgument", mentions: ["4", "-1"])
        ids.int32s[4] = 1 << 24 + 1
        expectError(parmlError { _ = try TokenDataset(ids: ids, blockSize: 2, mode: .random, seed: 0) }, "invalidArgument", mentions: ["2^24"])
        let d = try TokenDataset(ids: try countingIDs(10), blockSize: 2, mode: .random, seed: 0)
        let x = try Tensor(shape: Shape(1))
        expectError(
            parmlError { try d.copy(samples: UnsafeBufferPointer(start: nil, count: 0), epoch: 0, inputs: x, targets: x) },
            "invalidArgument")
    }

    @Test func theProbeHoldsTheLargestTarget() throws {
        // The largest id sits at 2, then at the very end: both lie in the probe's targets.
        for at in [2, 29] {
            let ids = try countingIDs(30)
            for i in 0..<30 { ids.int32s[i] = Int32(i % 5) }
            ids.int32s[at] = 77
            let d = try TokenDataset(ids: ids, blockSize: 6, mode: .random, seed: 0)
            let probe = try d.fitProbe()
            #expect(probe.inputShape == Shape(1, 6))
            #expect(probe.targets.shape == Shape(1, 6))
            #expect((0..<6).contains { probe.targets.int32s[$0] == 77 })
            #expect(d.numClasses == 78)
        }
    }

    @Test func loadsFlatFilesOfEachType() throws {
        let dir = try TempDir()
        let values: [UInt32] = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 200]
        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            let path = dir.file(name)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        let cases: [(TokenFileType, [UInt8])] = [
            (.uint8, values.map { UInt8($0) }),
            (.uint16, values.flatMap { withUnsafeBytes(of: UInt16($0).littleEndian, Array.init) }),
            (.uint32, values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }),
            (.int32, values.flatMap { withUnsafeBytes(of: Int32($0).littleEndian, Array.init) }),
        ]
        for (type, bytes) in cases {
            let path = try write("ids\(type.rawValue).bin", bytes)
            let d = try TokenDataset.load(cPath: path, type: type, blockSize: 4, mode: .sequential, seed: 0)
            #expect((0..<values.count).map { UInt32(d.ids[$0]) } == values && d.ids.type == type)
            #expect(d.count == 2 && d.numClasses == 201)
        }
        let odd = try write("odd.bin", [1, 0, 2])
        expectError(parmlError { _ = try TokenDataset.load(cPath: odd, type: .uint16, blockSize: 1, mode: .random, seed: 0) }, "format", mentions: ["3 bytes"])
        let big = try write("big.bin", withUnsafeBytes(of: UInt32(1 << 25).littleEndian, Array.init))
        expectError(parmlError { _ = try TokenDataset.load(cPath: big, type: .uint32, blockSize: 1, mode: .random, seed: 0) }, "format", mentions: ["2^24"])
        let negative = try write("neg.bin", withUnsafeBytes(of: Int32(-3).littleEndian, Array.init))
        expectError(parmlError { _ = try TokenDataset.load(cPath: negative, type: .int32, blockSize: 1, mode: .random, seed: 0) }, "format", mentions: ["-3"])
        let empty = try write("empty.bin", [])
        expectError(parmlError { _ = try TokenDataset.load(cPath: empty, type: .uint8, blockSize: 1, mode: .random, seed: 0) }, "format", mentions: ["empty"])
        let short = try write("short.bin", [1, 2, 3])
        expectError(parmlError { _ = try TokenDataset.load(cPath: short, type: .uint8, blockSize: 3, mode: .random, seed: 0) }, "invalidArgument")
        expectError(parmlError { _ = try TokenDataset.load(cPath: dir.file("missing.bin"), type: .uint8, blockSize: 1, mode: .random, seed: 0) }, "io")
        expectError(parmlError { _ = try TokenDataset.load(cPath: dir.path, type: .uint8, blockSize: 1, mode: .random, seed: 0) }, "io")
    }
}
