import CParmlProto
import ParmlModel
import ParmlSerialization
import ParmlTensor
import ParmlTraining
import Testing
import _ParmlTestSupport

/// pml_unpack_borrowing (bytes fields left in the input) must unpack exactly
/// what pml_unpack_bounded does: the same message, or the same failure.
@Suite struct BorrowedUnpackTests {
    typealias Descriptor = UnsafePointer<ProtobufCMessageDescriptor>

    static func packed(_ m: UnsafePointer<ProtobufCMessage>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: protobuf_c_message_get_packed_size(m))
        out.withUnsafeMutableBufferPointer { _ = protobuf_c_message_pack(m, $0.baseAddress!) }
        return out
    }

    /// Both unpacks of `input`, packed again (nil: it failed), and whether
    /// the borrowing one left at least one bytes field in the input.
    static func both(_ input: [UInt8], _ d: Descriptor) -> (plain: [UInt8]?, borrowed: [UInt8]?) {
        input.withUnsafeBufferPointer { b in
            let p = b.baseAddress ?? UnsafePointer(bitPattern: 1)!
            let budget = b.count * 2 + (4 << 20)
            var over: Int32 = 0
            let m = pml_unpack_bounded(d, p, b.count, budget, &over)
            defer { if let m { protobuf_c_message_free_unpacked(m, nil) } }
            let u = pml_unpack_borrowing(d, p, b.count, budget, &over)
            defer { pml_unpacked_free(u) }
            return (m.map { packed($0) }, u.map { packed(pml_unpacked_message($0)) })
        }
    }

    static func expectSame(_ input: [UInt8], _ d: Descriptor, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let (a, b) = both(input, d)
        #expect(a == b, "\(what)", sourceLocation: sourceLocation)
    }

    static func tensorBytes(_ values: [Float]) throws -> [UInt8] {
        encodedArray(try TensorFile.encode(try Tensor(values, shape: Shape(values.count))))
    }

    static func checkpoint() throws -> [UInt8] {
        let m = Model()
        try m.add(try Linear(inFeatures: 3, outFeatures: 5))  // 60 and 20 bytes of data
        try m.add(try Linear(inFeatures: 5, outFeatures: 1))  // 20 and 4
        try m.initialize(seed: 2)
        var o = OptimizerConfig()
        o.kind = .adam
        let t = try Trainer(model: m, loss: .meanSquaredError, optimizer: o, strategy: StrategyConfig())
        return encodedArray(try CheckpointFile.encode(t))
    }

    /// Data of every length around the 16-byte threshold decodes bit for bit,
    /// and from 16 bytes on it is read where it lies in the input.
    @Test func tensorsOfEveryDataLength() throws {
        for n in [0, 1, 3, 4, 5, 8, 1000] {
            let values = randomArray(n, seed: UInt64(n))
            let bytes = try Self.tensorBytes(values)
            let back = try bytes.withUnsafeBytes { try TensorFile.decode($0) }
            expectEqualElements(back.toArray().map(\.bitPattern), values.map(\.bitPattern), "\(n) floats")
            Self.expectSame(bytes, pml_tensor_descriptor(), "\(n) floats")
            try bytes.withUnsafeBufferPointer { b in
                let u = try #require(pml_unpack_borrowing(pml_tensor_descriptor(), b.baseAddress!, b.count, 1 << 20, nil))
                defer { pml_unpacked_free(u) }
                let data = UnsafeRawPointer(pml_unpacked_message(u)).assumingMemoryBound(to: Parml__Tensor.self).pointee.data
                let inside = data.data.map { UnsafeRawPointer($0) >= UnsafeRawPointer(b.baseAddress!) && UnsafeRawPointer($0) < UnsafeRawPointer(b.baseAddress! + b.count) } ?? false
                #expect(inside == (4 * n >= 16), "\(n) floats")
            }
        }
    }

    /// A file's own 16-byte field that looks like a placeholder is data like any other.
    @Test func forgedPlaceholderIsPlainData() throws {
        var fake = [UInt8](repeating: 0, count: 8) + Array("pmlborrw".utf8)
        fake[0] = 0  // index 0: this very field
        for index: UInt8 in [0, 1, 200] {
            fake[0] = index
            var w = Wire()
            w.uint(1, 1)
            w.bytes(2, [4])
            w.bytes(3, fake)
            let back = try w.bytes.withUnsafeBytes { try TensorFile.decode($0) }
            expectEqualElements(back.toArray().flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }, fake)
            Self.expectSame(w.bytes, pml_tensor_descriptor(), "forged index \(index)")
        }
    }

    /// Protobuf's merge rules hold: a repeated singular message is merged
    /// into one, the last bytes field wins; padded length varints are read.
    @Test func mergesAndPaddedLengths() throws {
        let a = try Self.tensorBytes([1, 2, 3, 4]), b = try Self.tensorBytes([5, 6, 7, 8])
        Self.expectSame(a + b, pml_tensor_descriptor(), "two tensors in a row")
        let ab = a + b
        try ab.withUnsafeBufferPointer { p in
            let u = try #require(pml_unpack_borrowing(pml_tensor_descriptor(), p.baseAddress!, p.count, 1 << 20, nil))
            defer { pml_unpacked_free(u) }
            let t = UnsafeRawPointer(pml_unpacked_message(u)).assumingMemoryBound(to: Parml__Tensor.self).pointee
            #expect(t.n_dims == 2)  // repeated dims: concatenated
            expectEqualElements(Array(UnsafeRawBufferPointer(start: t.data.data, count: t.data.len)), Array(b.suffix(16)))  // data: the last
        }
        var padded = Wire()
        padded.uint(1, 1)
        padded.bytes(2, [4])
        padded.bytes.append(contentsOf: [3 << 3 | 2, 0x90, 0x80, 0x00])  // length 16 in three bytes
        padded.bytes.append(contentsOf: [UInt8](repeating: 7, count: 16))
        Self.expectSame(padded.bytes, pml_tensor_descriptor(), "padded length")
        let c = try Self.checkpoint()
        let body = Array(c.dropLast(5))
        Self.expectSame(body + body, pml_checkpoint_descriptor(), "a checkpoint twice")
    }

    /// Every truncation and many single-byte changes of a checkpoint and a
    /// model file: the same message or the same failure either way.
    @Test func damagedFilesUnpackAlike() throws {
        let c = try Self.checkpoint()
        let model = encodedArray(try ModelFile.encode(try everyKindModel()))
        let noise = randomArray(4096, seed: 11).map(\.bitPattern)
        for (bytes, d) in [(c, pml_checkpoint_descriptor()), (model, pml_model_descriptor())] {
            for n in 0...bytes.count { Self.expectSame(Array(bytes.prefix(n)), d!, "first \(n) bytes") }
            for (k, r) in noise.enumerated() {
                var bad = bytes
                bad[Int(r >> 8) % bad.count] = UInt8(truncatingIfNeeded: k.isMultiple(of: 3) ? r : r ^ 0x80)
                Self.expectSame(bad, d!, "change \(k)")
            }
        }
    }
}
