#if canImport(Glibc)
import Glibc
#endif
import CParmlProto
import ParmlTensor

/// Constants of the file format (proto/parml.proto, docs/file-format.md).
public enum FileFormat {
    /// The format version this library writes and the newest it reads.
    public static let version: UInt32 = 2
    public static let modelMagic = "parml.model"
    public static let checkpointMagic = "parml.checkpoint"
    /// Residual blocks nest at most this deep in a file.
    public static let maxNesting = 64

    /// What unpacking `size` bytes may allocate: decoded tensors take about
    /// their encoded size; the rest (layer records, dims) is small in a real
    /// file but can be ~60x its encoded size in a hostile one.
    static func unpackBudget(_ size: Int) -> Int { size > Int.max / 4 ? Int.max / 2 : 2 * size + (4 << 20) }

    /// Checks the magic and version fields every top-level message starts with.
    static func checkHeader(magic: UnsafePointer<CChar>?, version: UInt32, expected: String, what: String) throws {
        let found = magic.map { String(cString: $0) } ?? ""
        guard found == expected else {
            let other = found == modelMagic || found == checkpointMagic ? " (it is a '\(found)' file)" : ""
            throw ParmlError.format("not a parml \(what): magic is '\(found.prefix(40))', expected '\(expected)'\(other)")
        }
        guard version != 0 else { throw ParmlError.format("the \(what) has no format_version") }
        guard version <= FileFormat.version else {
            throw ParmlError.format(
                "the \(what) has format version \(version), written by a newer parml; this library reads version \(FileFormat.version) and older")
        }
    }
}

extension FileFormat {
    /// Field 15 (crc32), wire type 5 (fixed32): the last 5 bytes of a file.
    static let trailerTag: UInt8 = 15 << 3 | 5
    static let trailerSize = 5

    /// zlib's CRC-32 of `count` bytes (pml_crc32: PCLMULQDQ where the CPU has it).
    static func crc(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt32 { pml_crc32(0, p, count) }

    /// Packs a top-level message (Model, Checkpoint) and appends its crc32
    /// field, computed over the bytes before it.
    static func packSealed(_ message: UnsafePointer<ProtobufCMessage>) throws -> EncodedBytes {
        let n = protobuf_c_message_get_packed_size(message)
        let out = try EncodedBytes(count: n + trailerSize)
        let p = out.pointer!
        let written = protobuf_c_message_pack(message, p)
        guard written == n else { throw ParmlError.internal("protobuf-c packed \(written) of \(n) bytes") }
        writeTrailer(p, n)
        return out
    }

    /// Packs a top-level message into `fd` and appends its crc32 field: no
    /// buffer of the file's size (pml_pack_to_fd).
    static func packSealed(_ message: UnsafePointer<ProtobufCMessage>, to fd: Int32, path: String) throws {
        var c: UInt32 = 0
        let e = pml_pack_to_fd(message, fd, &c)
        guard e == 0 else { throw ParmlError.io("write to '\(path)' failed: \(String(cString: strerror(e)))") }
        var trailer = [trailerTag, 0, 0, 0, 0]
        for i in 0..<4 { trailer[1 + i] = UInt8(truncatingIfNeeded: c >> (8 * UInt32(i))) }
        try trailer.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
    }

    /// The same with an auth field before the crc32 (FileAuthentication):
    /// packed in memory, since the tag covers every byte before it.
    static func packSealed(_ message: UnsafePointer<ProtobufCMessage>, key: UnsafeRawBufferPointer) throws -> EncodedBytes {
        try FileAuthentication.check(key)
        let n = protobuf_c_message_get_packed_size(message)
        let out = try EncodedBytes(count: n + FileAuthentication.fieldSize + trailerSize)
        let p = out.pointer!
        let written = protobuf_c_message_pack(message, p)
        guard written == n else { throw ParmlError.internal("protobuf-c packed \(written) of \(n) bytes") }
        let field = try FileAuthentication.field(for: UnsafeRawBufferPointer(start: p, count: n), key: key)
        (p + n).update(from: field, count: field.count)
        writeTrailer(p, n + field.count)
        return out
    }

    private static func writeTrailer(_ p: UnsafeMutablePointer<UInt8>, _ n: Int) {
        let c = crc(p, n)
        p[n] = trailerTag
        for i in 0..<4 { p[n + 1 + i] = UInt8(truncatingIfNeeded: c >> (8 * UInt32(i))) }
    }

    /// Whether `bytes` start with field 1 (magic) = `magic`, as every
    /// protobuf writer puts it (fields in number order).
    static func startsWithMagic(_ bytes: UnsafeRawBufferPointer, _ magic: String) -> Bool {
        let prefix = [0x0A, UInt8(magic.utf8.count)] + Array(magic.utf8)
        return bytes.count >= prefix.count && zip(prefix, bytes).allSatisfy { $0 == $1 }
    }

    /// `body` with its crc32 field appended: for tools and tests that write
    /// files by hand.
    public static func seal(_ body: [UInt8]) -> [UInt8] {
        var out = body + [UInt8](repeating: 0, count: trailerSize)
        out.withUnsafeMutableBufferPointer { writeTrailer($0.baseAddress!, body.count) }
        return out
    }

    /// Checks the crc32 field at the end of a file, or throws .format
    /// saying the file is truncated or damaged. `known`: the CRC of the
    /// first `covered` bytes, computed while reading (used when it covers the body).
    static func checkSeal(_ bytes: UnsafeRawBufferPointer, what: String, known: (covered: Int, value: UInt32)? = nil) throws {
        let n = bytes.count - trailerSize
        guard n >= 0, let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), base[n] == trailerTag else {
            throw ParmlError.format("the \(what) (\(bytes.count) bytes) does not end with its crc32 field: it is truncated, or not a parml file")
        }
        var stored: UInt32 = 0
        for i in 0..<4 { stored |= UInt32(base[n + 1 + i]) << (8 * UInt32(i)) }
        let actual = known.flatMap { $0.covered == n ? $0.value : nil } ?? crc(base, n)
        guard stored == actual else {
            throw ParmlError.format(
                "the \(what) is damaged: the CRC-32 of its \(n) bytes is \(hex(actual)), the file records \(hex(stored))")
        }
    }

    private static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}

extension FileFormat {
    /// A checkpoint's bytes as a message: seal, unpack within the budget,
    /// magic and version, each checked (`what` names it in messages).
    /// `key`: the key it must be authenticated with, nil for none
    /// (FileAuthentication.verify says what each mismatch is).
    static func checkpoint(
        _ bytes: UnsafeRawBufferPointer, known: (covered: Int, value: UInt32)?, what: String, key: UnsafeRawBufferPointer?
    ) throws -> Unpacked<Parml__Checkpoint> {
        try checkSeal(bytes, what: what, known: known)
        try FileAuthentication.verify(bytes, key: key, what: what)
        let u = try Unpacked<Parml__Checkpoint>(bytes, pml_checkpoint_descriptor(), what: what)
        let c = u.message.pointee
        try checkHeader(magic: c.magic, version: c.format_version, expected: checkpointMagic, what: "checkpoint")
        return u
    }

    /// A model file's bytes as a message: seal and unpack checked (its
    /// header is checked where its layers are read, ModelCodec.layers).
    static func model(
        _ bytes: UnsafeRawBufferPointer, known: (covered: Int, value: UInt32)?, key: UnsafeRawBufferPointer?
    ) throws -> Unpacked<Parml__Model> {
        try checkSeal(bytes, what: "model file", known: known)
        try FileAuthentication.verify(bytes, key: key, what: "model file")
        return try Unpacked<Parml__Model>(bytes, pml_model_descriptor(), what: "model file")
    }
}

extension FileIO {
    /// Reads a sealed parml file (model, checkpoint), computing the CRC of
    /// its body on the way: checkSeal then makes no second pass over it.
    public static func readSealed(_ path: String) throws -> EncodedBytes {
        try read(path, crcSkippingLast: FileFormat.trailerSize)
    }
}

/// A message unpacked by protobuf-c within an allocation budget; frees it
/// on deinit. Its bytes fields point into the input (pml_unpack_borrowing),
/// which must outlive it.
final class Unpacked<Message> {
    let message: UnsafeMutablePointer<Message>
    private let owner: OpaquePointer

    /// Unpacks `bytes` as `descriptor`'s message, or throws .format naming `what`.
    init(_ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, what: String) throws {
        guard bytes.count > 0, let base = bytes.baseAddress else { throw ParmlError.format("the \(what) is empty (0 bytes)") }
        var overBudget: Int32 = 0
        let u = pml_unpack_borrowing(
            descriptor, base.assumingMemoryBound(to: UInt8.self), bytes.count, FileFormat.unpackBudget(bytes.count), &overBudget)
        guard let u else {
            if overBudget != 0 {
                throw ParmlError.format(
                    "the \(what) (\(bytes.count) bytes) would decode to more than \(FileFormat.unpackBudget(bytes.count)) bytes; refusing a corrupt or hostile input")
            }
            throw ParmlError.format("the \(what) is not a valid protobuf message (\(bytes.count) bytes: truncated or corrupt)")
        }
        owner = u
        message = UnsafeMutableRawPointer(pml_unpacked_message(u)).bindMemory(to: Message.self, capacity: 1)
    }

    deinit { pml_unpacked_free(owner) }
}

/// Packs a built message into malloc'd bytes.
func pack(_ message: UnsafePointer<ProtobufCMessage>) throws -> EncodedBytes {
    let n = protobuf_c_message_get_packed_size(message)
    let out = try EncodedBytes(count: n)
    let written = protobuf_c_message_pack(message, out.pointer!)
    guard written == n else { throw ParmlError.internal("protobuf-c packed \(written) of \(n) bytes") }
    return out
}
