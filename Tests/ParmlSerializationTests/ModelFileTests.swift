import Foundation
import ParmlModel
@testable import ParmlSerialization
import ParmlTensor
import Testing
import _ParmlTestSupport

@Suite struct ModelFileTests {
    @Test func modelRoundTripIsExact() throws {
        let m = try everyKindModel()
        let bytes = encodedArray(try ModelFile.encode(m))
        let back = try bytes.withUnsafeBytes { try ModelFile.decode($0) }
        #expect(back.summary == m.summary)
        #expect(back.seed == m.seed)
        expectEqualElements(parameterBits(back), parameterBits(m))
        // Same predictions, bit for bit (inference: dropout off).
        let x = try Tensor(randomArray(5 * 12, seed: 9), shape: Shape(5, 3, 4))
        let a = try m.forward(x, PassContext(training: false)).toArray()
        let b = try back.forward(x, PassContext(training: false)).toArray()
        expectEqualElements(a.map(\.bitPattern), b.map(\.bitPattern))
        // Encoding is deterministic: the same model gives the same bytes.
        expectEqualElements(encodedArray(try ModelFile.encode(back)), bytes)
    }

    @Test func tensorRoundTrip() throws {
        let t = try Tensor(randomArray(24, seed: 3), shape: Shape(2, 3, 4))
        let bytes = encodedArray(try TensorFile.encode(t))
        let back = try bytes.withUnsafeBytes { try TensorFile.decode($0) }
        #expect(back.shape == t.shape)
        expectEqualElements(back.toArray().map(\.bitPattern), t.toArray().map(\.bitPattern))
        let empty = try Tensor(shape: Shape(0, 5))
        let e = try encodedArray(TensorFile.encode(empty)).withUnsafeBytes { try TensorFile.decode($0) }
        #expect(e.shape == Shape(0, 5))
    }

    @Test func uninitialisedModelIsRefused() throws {
        let m = Model()
        try m.add(try Linear(inFeatures: 2, outFeatures: 2))
        expectError(parmlError { _ = try ModelFile.encode(m) }, "state", mentions: ["not initialised"])
    }

    /// FileIO.readSealed checksums a file in 1 MiB pieces as it reads: the
    /// CRC it finds is the trailer's, and damage in any piece is caught.
    @Test func sealedReadChecksumsOnTheWay() throws {
        let dir = NSTemporaryDirectory() + "parml-sealed-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = Model()
        try m.add(try Linear(inFeatures: 700, outFeatures: 700))  // ~1.96 MB: two pieces
        try m.initialize(seed: 4)
        let path = dir + "/m.pb"
        try ModelFile.write(m, to: path)
        let file = try FileIO.readSealed(path)
        let bytes = encodedArray(file)
        let stored = bytes.suffix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(file.crc?.covered == bytes.count - 5)
        #expect(file.crc?.value == stored)
        expectEqualElements(parameterBits(try ModelFile.decode(file)), parameterBits(m))
        for at in [3, bytes.count / 2, bytes.count - 6] {
            var bad = bytes
            bad[at] ^= 0x10
            try bad.withUnsafeBytes { try FileIO.writeAtomically($0, to: path) }
            expectError(parmlError { _ = try ModelFile.decode(try FileIO.readSealed(path)) }, "format", mentions: ["damaged"])
        }
        try [UInt8(1), 2].withUnsafeBytes { try FileIO.writeAtomically($0, to: path) }
        expectError(parmlError { _ = try ModelFile.decode(try FileIO.readSealed(path)) }, "format", mentions: ["crc32 field"])
    }

    @Test func atomicWriteReplacesAndLeavesNoTemporary() throws {
        let dir = NSTemporaryDirectory() + "parml-io-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.pb"
        for size in [10, 3] {
            let bytes = [UInt8](repeating: UInt8(size), count: size)
            try bytes.withUnsafeBytes { try FileIO.writeAtomically($0, to: path) }
            expectEqualElements(encodedArray(try FileIO.read(path)), bytes)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["m.pb"])
        expectError(parmlError { _ = try FileIO.read(dir + "/missing") }, "io", mentions: ["missing"])
        expectError(
            parmlError { try [UInt8(1)].withUnsafeBytes { try FileIO.writeAtomically($0, to: dir + "/no/such/dir/f") } },
            "io")
    }

    /// Issue 24, item 11: a temporary whose writer is gone (its flock is
    /// free) is removed by the next save of its target; one whose writer
    /// still holds its lock, and names outside the `<path>.tmp.<pid>.<n>`
    /// pattern, stay. Both ways of writing (unnamed file, named fallback)
    /// leave nothing of their own. (tests/c/test_checkpoint_kill kills real
    /// writers.)
    @Test func savesRemoveOnlyTemporariesOfDeadWriters() throws {
        let dir = NSTemporaryDirectory() + "parml-stale-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.pb"
        let keep = ["m.pb.tmp.999999.2", "m.pb.tmp.x.1", "m.pb.tmp.1.2.3", "n.pb.tmp.1.2", "m.pb.tmp.1"]
        for name in keep + ["m.pb.tmp.999999.1"] {
            #expect(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data([1, 2, 3])))
        }
        let held = open(dir + "/" + keep[0], O_RDWR)
        #expect(held >= 0 && flock(held, LOCK_EX) == 0)
        defer { close(held) }
        let bytes = [UInt8](repeating: 7, count: 100)
        try bytes.withUnsafeBytes { try FileIO.writeAtomically($0, to: path) }
        expectEqualElements(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), (keep + ["m.pb"]).sorted())
        for unnamed in [true, false] {
            let wrote = try bytes.withUnsafeBytes { b in
                try FileIO.writeAtomically(to: path, unnamed: unnamed) { fd, tmp in try FileIO.writeAll(fd, b, path: tmp) }
            }
            #expect(wrote)
            expectEqualElements(encodedArray(try FileIO.read(path)), bytes)
            expectEqualElements(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), (keep + ["m.pb"]).sorted())
        }
    }
}

/// Every registered kind through a format-2 file and an ONNX export, taken
/// from the registry: a new kind is covered with no change here.
@Suite struct EveryKindFileTests {
    @Test(arguments: LayerKinds.all.map(\.name))
    func roundTripsThroughAFile(_ name: String) throws {
        let kind = try LayerKinds.kind(named: name)
        func sample(_ kind: LayerKind) throws -> Layer {
            var attributes: [Attributes.Entry] = []
            for spec in kind.attributes where spec.defaultValue == nil {
                switch spec.type {
                case .int: attributes.append(.init(name: spec.name, value: .int(4)))
                case .float: attributes.append(.init(name: spec.name, value: .float(0.25)))
                case .ints: attributes.append(.init(name: spec.name, value: .ints([3])))
                default: Issue.record("\(kind.name): no sample value for a required \(spec.type.name)")
                }
            }
            return try kind.make(attributes)
        }
        // A kind that needs an earlier one (a tied classifier) follows it.
        let first = try kind.requires.map { try LayerKinds.kind(named: $0) } ?? kind
        let m = Model()
        if first.name != kind.name { try m.add(sample(first)) }
        try m.add(sample(kind))
        try m.initialize(seed: 3)
        let bytes = encodedArray(try ModelFile.encode(m))
        let back = try bytes.withUnsafeBytes { try ModelFile.decode($0) }
        #expect(back.root.layers.last?.kind == name)
        #expect(back.root.layers.last?.attributes == m.root.layers.last?.attributes)
        expectEqualElements(parameterBits(back), parameterBits(m))
        // One sequence of 3 positions of 4 features: sequence kinds (attention)
        // need rank 3; kinds that refuse it read images (N, C, H, W).
        let shape = (try? m.root.layers[0].outputShape(for: Shape(1, 3, 4))) == nil ? Shape(2, 4, 5, 5) : Shape(1, 3, 4)
        var values = randomArray(shape.count, seed: 4, low: -2, high: 2)
        if case .tokenIDs = first.input { values = (0..<shape.count).map { Float($0 % 4) } }
        let x = try Tensor(values, shape: shape)
        let a = try m.forward(x, PassContext(training: false)).toArray()
        let b = try back.forward(x, PassContext(training: false)).toArray()
        expectEqualElements(a.map(\.bitPattern), b.map(\.bitPattern))
        let onnx = try OnnxExport.encode(m, inputShape: x.shape, producerVersion: "test")
        #expect(onnx.count > 0)
    }
}
