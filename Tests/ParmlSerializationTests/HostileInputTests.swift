import ParmlModel
import ParmlSerialization
import ParmlTensor
import Testing
import _ParmlTestSupport

/// A minimal protobuf writer, to build files no parml would write.
struct Wire {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
    mutating func tag(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }
    mutating func uint(_ field: Int, _ v: UInt64) {
        tag(field, 0)
        varint(v)
    }
    mutating func bytes(_ field: Int, _ b: [UInt8]) {
        tag(field, 2)
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }
    mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
    mutating func float(_ field: Int, _ f: Float) {
        tag(field, 5)
        withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func tensor(dims: [Int64], dataBytes: Int) -> [UInt8] {
        var w = Wire()
        w.uint(1, 1)
        var packed = Wire()
        for d in dims { packed.varint(UInt64(bitPattern: d)) }
        w.bytes(2, packed.bytes)
        w.bytes(3, [UInt8](repeating: 0, count: dataBytes))
        return w.bytes
    }

    /// A model file header followed by `layers` (encoded Layer messages).
    static func model(magic: String = "parml.model", version: UInt64 = 1, layers: [[UInt8]]) -> [UInt8] {
        var w = Wire()
        w.string(1, magic)
        w.uint(2, version)
        w.uint(3, 7)
        for l in layers { w.bytes(4, l) }
        return FileFormat.seal(w.bytes)
    }

    static func linear(_ i: Int64, _ o: Int64, depth: UInt64 = 0, weight: [UInt8]? = nil) -> [UInt8] {
        var w = Wire()
        w.uint(1, 1)
        w.uint(2, depth)
        w.uint(3, UInt64(i))
        w.uint(4, UInt64(o))
        w.bytes(9, weight ?? tensor(dims: [o, i], dataBytes: Int(i * o * 4)))
        return w.bytes
    }

    static func kind(_ k: UInt64, depth: UInt64 = 0) -> [UInt8] {
        var w = Wire()
        w.uint(1, k)
        w.uint(2, depth)
        return w.bytes
    }
}

@Suite struct HostileInputTests {
    @Test func handWrittenFileLoads() throws {
        // The writer above is right: a file it builds loads.
        let m = try Wire.model(layers: [Wire.linear(3, 2), Wire.kind(2)]).withUnsafeBytes { try ModelFile.decode($0) }
        #expect(m.parameterCount == 6)
        #expect(m.seed == 7)
    }

    @Test func everyTruncationIsAFormatError() throws {
        let bytes = encodedArray(try ModelFile.encode(try everyKindModel()))
        for n in 0..<bytes.count {
            let e = modelError(Array(bytes[0..<n]))
            #expect(e?.kind == "format", "prefix of \(n) bytes: \(String(describing: e))")
        }
    }

    @Test func everyBitFlipIsAFormatError() throws {
        let bytes = encodedArray(try ModelFile.encode(try everyKindModel()))
        for i in 0..<bytes.count * 8 {
            var b = bytes
            b[i / 8] ^= UInt8(1 << (i % 8))
            let e = modelError(b)
            #expect(e?.kind == "format", "bit \(i): \(String(describing: e))")
        }
    }

    @Test func bitFlipsUnderAValidChecksumNeverCrash() throws {
        // The checksum is recomputed after the flip: the parser and the
        // checks behind it see every damaged variant of the body.
        let bytes = encodedArray(try ModelFile.encode(try everyKindModel()))
        let body = Array(bytes.dropLast(5))
        var loaded = 0, refused = 0
        for i in 0..<body.count * 8 {
            var b = body
            b[i / 8] ^= UInt8(1 << (i % 8))
            do {
                _ = try FileFormat.seal(b).withUnsafeBytes { try ModelFile.decode($0) }
                loaded += 1  // a flip inside float data still gives a valid file
            } catch let e as ParmlError {
                #expect(e.kind == "format", "bit \(i): \(e.kind): \(e.message)")
                refused += 1
            }
        }
        #expect(refused > 0 && loaded > 0)
    }

    @Test func wrongMagicAndFutureVersion() {
        expectError(modelError(Wire.model(magic: "onnx", layers: [Wire.kind(2)])), "format", mentions: ["magic", "onnx"])
        expectError(
            modelError(Wire.model(magic: "parml.checkpoint", layers: [Wire.kind(2)])), "format",
            mentions: ["checkpoint file", "not a valid protobuf message"])
        expectError(modelError(Wire.model(magic: "parml.modelx", layers: [Wire.kind(2)])), "format", mentions: ["parml.modelx"])
        expectError(modelError(Wire.model(version: 3, layers: [Wire.kind(2)])), "format", mentions: ["version 3", "newer"])
        expectError(modelError(Wire.model(version: 0, layers: [Wire.kind(2)])), "format", mentions: ["format_version"])
        expectError(modelError(Wire.model(layers: [])), "format", mentions: ["no layers"])
        expectError(modelError(Wire.model(layers: [Wire.kind(99)])), "format", mentions: ["kind 99"])
        expectError(modelError([]), "format", mentions: ["crc32"])
        expectError(modelError([0x0A, 0x01, 0x41]), "format", mentions: ["truncated"])
    }

    @Test func badTensors() {
        // dims whose product overflows
        let huge = Wire.tensor(dims: [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1], dataBytes: 4)
        expectError(parmlError { _ = try huge.withUnsafeBytes { try TensorFile.decode($0) } }, "format", mentions: ["overflow"])
        let negative = Wire.tensor(dims: [-1], dataBytes: 0)
        expectError(parmlError { _ = try negative.withUnsafeBytes { try TensorFile.decode($0) } }, "format", mentions: ["dims[0]"])
        let short = Wire.tensor(dims: [2, 3], dataBytes: 20)
        expectError(parmlError { _ = try short.withUnsafeBytes { try TensorFile.decode($0) } }, "format", mentions: ["24 bytes", "20"])
        let rank9 = Wire.tensor(dims: [1, 1, 1, 1, 1, 1, 1, 1, 1], dataBytes: 4)
        expectError(parmlError { _ = try rank9.withUnsafeBytes { try TensorFile.decode($0) } }, "format", mentions: ["9 dims"])
        var noType = Wire()
        noType.bytes(3, [0, 0, 0, 0])
        expectError(parmlError { _ = try noType.bytes.withUnsafeBytes { try TensorFile.decode($0) } }, "format", mentions: ["dtype"])
        // A layer whose weight does not match its declared sizes.
        let wrongShape = Wire.linear(3, 2, weight: Wire.tensor(dims: [3, 2], dataBytes: 24))
        expectError(modelError(Wire.model(layers: [wrongShape])), "format", mentions: ["shape"])
        // A huge layer that declares no data: refused before any allocation.
        let noData = Wire.linear(40000, 50000, weight: Wire.tensor(dims: [50000, 40000], dataBytes: 0))
        expectError(modelError(Wire.model(layers: [noData])), "format")
    }

    @Test func deepNestingAndBadDepths() {
        var deep: [[UInt8]] = []
        for d in 0...FileFormat.maxNesting { deep.append(Wire.kind(9, depth: UInt64(d))) }
        deep.append(Wire.kind(2, depth: UInt64(FileFormat.maxNesting + 1)))
        expectError(modelError(Wire.model(layers: deep)), "format", mentions: ["deeper than \(FileFormat.maxNesting)"])
        expectError(modelError(Wire.model(layers: [Wire.kind(2, depth: 3)])), "format", mentions: ["depth 3"])
        expectError(modelError(Wire.model(layers: [Wire.kind(9)])), "format", mentions: ["at least one layer"])
        expectError(modelError(Wire.model(layers: [Wire.kind(9), Wire.kind(9, depth: 1)])), "format")
    }

    @Test func hugeRepeatedFieldsHitTheBudget() {
        // 4 MiB of empty Layer records: each 2 bytes on the wire but ~100 decoded.
        var w = Wire()
        w.string(1, "parml.model")
        w.uint(2, 1)
        w.bytes.reserveCapacity(4 << 20)
        for _ in 0..<(2 << 20) { w.bytes.append(contentsOf: [0x22, 0x00]) }
        expectError(modelError(FileFormat.seal(w.bytes)), "format", mentions: ["would decode to more than"])
        // A tensor with 8 MiB of packed dims.
        var t = Wire()
        t.uint(1, 1)
        t.bytes(2, [UInt8](repeating: 1, count: 8 << 20))
        expectError(parmlError { _ = try t.bytes.withUnsafeBytes { try TensorFile.decode($0) } }, "format")
    }
}
