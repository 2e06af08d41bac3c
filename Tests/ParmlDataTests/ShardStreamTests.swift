import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

@Suite struct ShardStreamTests {
    /// A version-1 .npy file: `descr`, `shape`, raw little-endian `data`.
    func npy(descr: String, shape: [Int], data: [UInt8]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
        while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
        dict += "\n"
        let n = dict.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(dict.utf8) + data
    }

    /// Shards of rows whose 3 float32 inputs are (id, id + 0.5, -id) and whose
    /// label is id % 7, where id counts rows across shards.
    func writeShards(_ dir: TempDir, rows: [Int]) throws {
        var lines = ["parml-shards 1", "inputs float32 3", "targets int32"]
        var id = 0
        for (k, r) in rows.enumerated() {
            var x: [Float] = [], y: [Int32] = []
            for _ in 0..<r {
                x += [Float(id), Float(id) + 0.5, -Float(id)]
                y.append(Int32(id % 7))
                id += 1
            }
            try writeBytes(npy(descr: "<f4", shape: [r, 3], data: x.withUnsafeBytes { Array($0) }), to: dir.file("x\(k).npy"), gzip: false)
            try writeBytes(npy(descr: "<i4", shape: [r], data: y.withUnsafeBytes { Array($0) }), to: dir.file("y\(k).npy"), gzip: false)
            lines.append("shard x\(k).npy y\(k).npy \(r)  # shard \(k)")
        }
        try writeBytes(Array((lines.joined(separator: "\n") + "\n").utf8), to: dir.file("manifest.txt"), gzip: false)
    }

    /// Reads a whole epoch through a batcher, as fit does; returns each row's first input and its label.
    func epoch(_ s: ShardStream, _ e: Int, batch: Int = 16) throws -> [(Float, Int32)] {
        var b = try Batcher(dataset: s, batchSize: batch, shuffle: true, dropLast: false, seed: 99)
        b.startEpoch(e)
        let x = try Tensor(shape: Shape(1, 3)), y = try Tensor(shape: Shape(1), dtype: .int32)
        var out: [(Float, Int32)] = []
        for k in 0..<b.batchCount {
            let n = try b.fill(batch: k, inputs: x, targets: y)
            for r in 0..<n {
                #expect(x.data[r * 3 + 1] == x.data[r * 3] + 0.5 && x.data[r * 3 + 2] == -x.data[r * 3])
                out.append((x.data[r * 3], y.int32s[r]))
            }
        }
        return out
    }

    @Test func anEpochIsAPermutationReproducibleFromSeedAndEpoch() throws {
        let dir = try TempDir()
        try writeShards(dir, rows: [50, 37, 64, 1])
        let s = try ShardStream(path: dir.path, seed: 5, shuffleBuffer: 20, prefetchRows: 8, rank: 0, ranks: 1)
        #expect(s.count == 152 && s.numClasses == 7 && s.inputShape == Shape(152, 3))
        let e0 = try epoch(s, 0), e1 = try epoch(s, 1)
        let ids0 = e0.map { Int($0.0) }
        expectEqualElements(ids0.sorted(), Array(0..<152))
        #expect(e0.allSatisfy { Int($0.0) % 7 == Int($0.1) })  // each label travels with its row
        expectEqualElements(ids0, s.order(epoch: 0))
        expectEqualElements(e1.map { Int($0.0) }, s.order(epoch: 1))
        #expect(ids0 != e1.map { Int($0.0) })
        #expect(ids0 != Array(0..<152))
        // A second dataset with the same seed streams the same order; another seed does not.
        let again = try ShardStream(path: dir.file("manifest.txt"), seed: 5, shuffleBuffer: 20, prefetchRows: 3, rank: 0, ranks: 1)
        expectEqualElements(try epoch(again, 1).map { Int($0.0) }, e1.map { Int($0.0) })
        let other = try ShardStream(path: dir.path, seed: 6, shuffleBuffer: 20, prefetchRows: 8, rank: 0, ranks: 1)
        #expect(other.order(epoch: 0) != ids0)
    }

    @Test func bufferOfOneReadsInFileOrder() throws {
        let dir = try TempDir()
        try writeShards(dir, rows: [10, 5])
        let s = try ShardStream(path: dir.path, seed: 5, shuffleBuffer: 1, prefetchRows: 4, rank: 0, ranks: 1)
        expectEqualElements(try epoch(s, 3, batch: 4).map { Int($0.0) }, Array(0..<15))
    }

    @Test func positionsOutOfTurnRestartTheStreamAtThem() throws {
        let dir = try TempDir()
        try writeShards(dir, rows: [30, 30, 30])
        let s = try ShardStream(path: dir.path, seed: 1, shuffleBuffer: 25, prefetchRows: 6, rank: 0, ranks: 1)
        let want = s.order(epoch: 2)
        let x = try Tensor(shape: Shape(1, 3)), y = try Tensor(shape: Shape(1), dtype: .int32)
        for positions in [[70, 71, 72], [5, 6], [89], [0, 1, 2, 3], [40, 10]] {
            try positions.withUnsafeBufferPointer { try s.copy(samples: $0, epoch: 2, inputs: x, targets: y) }
            expectEqualElements((0..<positions.count).map { Int(x.data[$0 * 3]) }, positions.map { want[$0] })
        }
    }

    @Test func ranksSplitTheShards() throws {
        let dir = try TempDir()
        try writeShards(dir, rows: [10, 20, 30])
        let r0 = try ShardStream(path: dir.path, seed: 1, shuffleBuffer: 8, prefetchRows: 5, rank: 0, ranks: 2)
        let r1 = try ShardStream(path: dir.path, seed: 1, shuffleBuffer: 8, prefetchRows: 5, rank: 1, ranks: 2)
        #expect(r0.count == 40 && r1.count == 20)
        #expect(Set(try epoch(r0, 0).map { Int($0.0) }) == Set(Array(0..<10) + Array(30..<60)))
        #expect(Set(try epoch(r1, 0).map { Int($0.0) }) == Set(10..<30))
        let none = try ShardStream(path: dir.path, seed: 1, shuffleBuffer: 8, prefetchRows: 5, rank: 3, ranks: 4)
        #expect(none.count == 0 && none.inputShape == Shape(0, 3) && none.numClasses == nil)
        #expect(try none.fitProbe().inputShape == Shape(1, 3))
    }

    @Test func aShardTruncatedAfterOpeningIsAnErrorNotACrash() throws {
        let dir = try TempDir()
        try writeShards(dir, rows: [40, 40])
        let s = try ShardStream(path: dir.path, seed: 1, shuffleBuffer: 1, prefetchRows: 4, rank: 0, ranks: 1)
        let bytes = try readBytes(dir.file("x1.npy"))
        try writeBytes(Array(bytes.prefix(bytes.count - 100)), to: dir.file("x1.npy"), gzip: false)
        do {
            _ = try epoch(s, 0)
            Issue.record("a truncated shard was read")
        } catch let e as ParmlError {
            guard case .io(let m) = e else { throw e }
            #expect(m.contains("x1.npy") && m.contains("changed on disk"))
        }
    }
}
