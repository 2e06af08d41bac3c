import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

@Suite struct IDXTests {
    @Test(arguments: [false, true])
    func roundTripUbyte(gzip: Bool) throws {
        let dir = try TempDir()
        let path = dir.file(gzip ? "a.idx.gz" : "a.idx")
        let values = (0..<60).map { UInt8(($0 * 37 + 11) % 256) } + []
        try IDX.write(path: path, dims: [3, 4, 5], ubyte: values, gzip: gzip)

        let raw = try readBytes(path)
        if gzip {
            #expect(raw.prefix(2) == [0x1F, 0x8B])
        } else {
            expectEqualElements(raw, idxHeader(type: 0x08, dims: [3, 4, 5]) + values)
        }

        let a = try IDX.read(path: path)
        #expect(a.dims == [3, 4, 5])
        #expect(a.type == .ubyte)
        expectEqualElements(a.values, values.map(Float.init))
    }

    @Test func roundTripExtremes() throws {
        let dir = try TempDir()
        let path = dir.file("x.idx")
        try IDX.write(path: path, dims: [2], ubyte: [0, 255], gzip: false)
        #expect(try IDX.read(path: path).values == [0, 255])
    }

    /// Payloads much larger than one read chunk, so elements are decoded
    /// across many reads (and a gzip stream across many inflate calls).
    @Test(arguments: [false, true])
    func largePayloadSpansChunks(gzip: Bool) throws {
        let dir = try TempDir()
        let path = dir.file("big")
        let n = 3 * IDX.chunkBytes / 2 + 7
        let ints = (0..<n).map { Int16(truncatingIfNeeded: $0 &* 7919) }
        try writeBytes(idxHeader(type: 0x0B, dims: [UInt32(n)]) + ints.flatMap(be), to: path, gzip: gzip)
        let a = try IDX.read(path: path)
        #expect(a.dims == [n])
        expectEqualElements(a.values, ints.map(Float.init))

        let bytes = (0..<(5 * IDX.chunkBytes / 2)).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let path2 = dir.file("big2")
        try IDX.write(path: path2, dims: [bytes.count / 4, 4], ubyte: bytes, gzip: gzip)
        expectEqualElements(try IDX.read(path: path2).values, bytes.map(Float.init))
    }

    struct TypeCase: Sendable, CustomTestStringConvertible {
        let type: IDXElementType
        let payload: [UInt8]
        let dims: [UInt32]
        let expected: [Float]
        var testDescription: String { "\(type)" }
    }

    static let typeCases: [TypeCase] = {
        let sbytes: [Int8] = [-128, -1, 0, 1, 127, -7]
        let i16: [Int16] = [-32768, -1, 0, 1, 300, 32767]
        let i32: [Int32] = [Int32.min, -5, 0, 7, 16_777_216, Int32.max]
        let f32: [Float] = [-1.5, 0, 3.25, .infinity, 1e-38, -0.1]
        let f64: [Double] = [0.1, -2.5, 1024, 1e-3, -1e10, 0]
        return [
            TypeCase(type: .ubyte, payload: [0, 1, 128, 255], dims: [2, 2], expected: [0, 1, 128, 255]),
            TypeCase(
                type: .sbyte, payload: sbytes.map { UInt8(bitPattern: $0) }, dims: [6],
                expected: sbytes.map(Float.init)),
            TypeCase(type: .int16, payload: i16.flatMap(be), dims: [2, 3], expected: i16.map(Float.init)),
            TypeCase(type: .int32, payload: i32.flatMap(be), dims: [3, 2], expected: i32.map(Float.init)),
            TypeCase(
                type: .float32, payload: f32.flatMap { be($0.bitPattern) }, dims: [1, 2, 3], expected: f32),
            TypeCase(
                type: .float64, payload: f64.flatMap { be($0.bitPattern) }, dims: [6],
                expected: f64.map { Float($0) }),
        ]
    }()

    @Test(arguments: typeCases, [false, true])
    func elementTypes(_ c: TypeCase, gzip: Bool) throws {
        let dir = try TempDir()
        let path = dir.file("t")
        try writeBytes(idxHeader(type: c.type.rawValue, dims: c.dims) + c.payload, to: path, gzip: gzip)
        let a = try IDX.read(path: path)
        #expect(a.type == c.type)
        expectEqualElements(a.dims, c.dims.map(Int.init))
        expectEqualElements(a.values, c.expected)
    }

    @Test func rankEight() throws {
        let dir = try TempDir()
        let path = dir.file("r8")
        let dims = [1, 2, 1, 2, 1, 2, 1, 2]
        try IDX.write(path: path, dims: dims, ubyte: Array(0..<16), gzip: false)
        let a = try IDX.read(path: path)
        expectEqualElements(a.dims, dims)
        expectEqualElements(a.values, (0..<16).map(Float.init))
    }

    @Test(arguments: [false, true])
    func truncatedPayload(gzip: Bool) throws {
        let dir = try TempDir()
        let path = dir.file("short")
        try writeBytes(idxHeader(type: 0x0C, dims: [2, 5]) + [UInt8](repeating: 9, count: 37), to: path, gzip: gzip)
        expectError(parmlError { _ = try IDX.read(path: path) }, "format", mentions: [path, "40", "37"])
    }

    /// A gzip file cut in the middle of its compressed stream: zlib stops
    /// early, which must read as a truncated payload, not as success.
    @Test func truncatedGzipStream() throws {
        let dir = try TempDir()
        let full = dir.file("full.gz")
        // Incompressible-ish payload so the cut lands inside the deflate data.
        var state: UInt32 = 12345
        let payload = (0..<5000).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        try IDX.write(path: full, dims: [5000], ubyte: payload, gzip: true)
        let bytes = try readBytes(full)
        let cut = dir.file("cut.gz")
        try writeBytes(Array(bytes.prefix(bytes.count / 2)), to: cut, gzip: false)
        let e = parmlError { _ = try IDX.read(path: cut) }
        expectError(e, "format", mentions: [cut, "5000"])
    }

    /// Damaged compressed bytes (the CRC no longer matches): .format, with
    /// zlib's reason, not a silently wrong array.
    @Test func corruptGzipStream() throws {
        let dir = try TempDir()
        let full = dir.file("full.gz")
        var state: UInt32 = 99
        let payload = (0..<5000).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        try IDX.write(path: full, dims: [5000], ubyte: payload, gzip: true)
        var bytes = try readBytes(full)
        for i in 40..<80 { bytes[i] ^= 0x5A }
        let bad = dir.file("bad.gz")
        try writeBytes(bytes, to: bad, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: bad) }, "format", mentions: [bad, "corrupt gzip"])
    }

    @Test(arguments: [false, true])
    func trailingGarbage(gzip: Bool) throws {
        let dir = try TempDir()
        let path = dir.file("long")
        try writeBytes(idxHeader(type: 0x08, dims: [4]) + [1, 2, 3, 4, 5, 6], to: path, gzip: gzip)
        expectError(parmlError { _ = try IDX.read(path: path) }, "format", mentions: [path, "trailing", "4", "6"])
    }

    @Test func badMagic() throws {
        let dir = try TempDir()
        let path = dir.file("magic")
        try writeBytes(idxHeader(type: 0x08, dims: [2], magic: (0x01, 0x00)) + [1, 2], to: path, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: path) }, "format", mentions: [path, "magic", "0x01"])
        let path2 = dir.file("magic2")
        try writeBytes(idxHeader(type: 0x08, dims: [2], magic: (0x00, 0x1F)) + [1, 2], to: path2, gzip: true)
        expectError(parmlError { _ = try IDX.read(path: path2) }, "format", mentions: ["0x1F"])
    }

    @Test func unknownElementType() throws {
        let dir = try TempDir()
        let path = dir.file("type")
        try writeBytes(idxHeader(type: 0x0A, dims: [2]) + [1, 2], to: path, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: path) }, "format", mentions: ["0x0A"])
    }

    @Test func badRank() throws {
        let dir = try TempDir()
        let zero = dir.file("rank0")
        try writeBytes([0, 0, 0x08, 0], to: zero, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: zero) }, "format", mentions: ["rank 0"])
        let nine = dir.file("rank9")
        try writeBytes(idxHeader(type: 0x08, dims: [UInt32](repeating: 1, count: 9)) + [7], to: nine, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: nine) }, "format", mentions: ["rank 9"])
    }

    @Test func zeroDimension() throws {
        let dir = try TempDir()
        let path = dir.file("zero")
        try writeBytes(idxHeader(type: 0x08, dims: [3, 0, 2]), to: path, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: path) }, "format", mentions: [path, "dimension 1 is 0"])
    }

    /// Huge declared dimensions fail on the header, before any payload is
    /// read or memory reserved for it.
    @Test func oversizedDimensions() throws {
        let dir = try TempDir()
        let overflow = dir.file("overflow")
        try writeBytes(idxHeader(type: 0x0E, dims: [UInt32.max, UInt32.max, UInt32.max]), to: overflow, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: overflow) }, "format", mentions: ["limit"])
        let big = dir.file("big")
        try writeBytes(idxHeader(type: 0x08, dims: [65536, 65536]), to: big, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: big) }, "format", mentions: ["limit"])
        // Within the limit but with no payload: a truncation, not an allocation of the claim.
        let claim = dir.file("claim")
        try writeBytes(idxHeader(type: 0x08, dims: [1 << 15, 1 << 15]) + [1, 2, 3], to: claim, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: claim) }, "format", mentions: ["1073741824", "got 3"])
    }

    @Test func truncatedHeader() throws {
        let dir = try TempDir()
        let empty = dir.file("empty")
        try writeBytes([], to: empty, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: empty) }, "format", mentions: [empty, "header"])
        let two = dir.file("two")
        try writeBytes([0, 0], to: two, gzip: true)
        expectError(parmlError { _ = try IDX.read(path: two) }, "format", mentions: ["header"])
        let dims = dir.file("dims")
        try writeBytes([0, 0, 0x08, 2, 0, 0, 0, 3, 0, 0], to: dims, gzip: false)
        expectError(parmlError { _ = try IDX.read(path: dims) }, "format", mentions: ["dimensions", "8", "6"])
    }

    @Test func missingFile() throws {
        let dir = try TempDir()
        let path = dir.file("does-not-exist.idx")
        expectError(parmlError { _ = try IDX.read(path: path) }, "io", mentions: [path])
    }

    @Test func directoryIsAnIOError() throws {
        let dir = try TempDir()
        let e = parmlError { _ = try IDX.read(path: dir.path) }
        expectError(e, "io", mentions: [dir.path + ": read failed"])
        #expect(e?.message.components(separatedBy: dir.path).count == 2, "path named once: \(e?.message ?? "")")
    }

    @Test func writeValidatesItsArguments() throws {
        let dir = try TempDir()
        let path = dir.file("w")
        expectError(parmlError { try IDX.write(path: path, dims: [2, 3], ubyte: [1, 2, 3], gzip: false) }, "invalidArgument", mentions: ["3", "6"])
        expectError(parmlError { try IDX.write(path: path, dims: [], ubyte: [], gzip: false) }, "invalidArgument")
        expectError(parmlError { try IDX.write(path: path, dims: [0], ubyte: [], gzip: false) }, "invalidArgument")
        expectError(
            parmlError { try IDX.write(path: dir.file("no/such/dir/w"), dims: [1], ubyte: [1], gzip: true) }, "io",
            mentions: ["no/such/dir"])
    }
}
