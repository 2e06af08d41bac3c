import CZlib
import ParmlTensor

/// One member of a zip archive, as its central directory describes it.
public struct ZipMember: Sendable, Equatable {
    public let name: String
    /// 0: stored (the bytes as they are), 8: deflated.
    public let method: UInt16
    public let compressedSize: Int
    public let size: Int
    public let crc32: UInt32
    let localHeaderOffset: Int
    let flags: UInt16
}

/// Reader of the zip archives numpy.savez and savez_compressed write
/// (including their ZIP64 records): the central directory, and each
/// member's bytes in place (stored) or inflated (deflated). Every offset
/// and size is checked against the archive's length before it is used.
public enum Zip {
    /// The members listed in the central directory of `bytes`.
    public static func members(of bytes: UnsafeRawBufferPointer, name: String) throws -> [ZipMember] {
        func bad(_ what: String) -> ParmlError { ParmlError.format("\(name): not a readable zip archive (.npz): \(what)") }
        func u16(_ o: Int) -> Int { Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) throws -> Int {
            guard let v = Int(exactly: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self))) else {
                throw bad("a 64-bit size is out of range")
            }
            return v
        }

        // The end-of-central-directory record: 22 bytes plus a comment of
        // up to 65535, so it starts in the archive's last 65557 bytes.
        let n = bytes.count
        guard n >= 22 else { throw bad("\(n) bytes, shorter than the 22-byte end record (truncated?)") }
        var eocd = -1
        var o = n - 22
        while o >= max(0, n - 22 - 65535) {
            if u32(o) == 0x0605_4b50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw bad("no end-of-central-directory record (truncated, or not a zip file)") }
        var entries = u16(eocd + 10), dirSize = u32(eocd + 12), dirOffset = u32(eocd + 16)
        if entries == 0xFFFF || dirSize == 0xFFFF_FFFF || dirOffset == 0xFFFF_FFFF {
            // ZIP64: a locator just before the end record points at the real one.
            let locator = eocd - 20
            guard locator >= 0, u32(locator) == 0x0706_4b50 else { throw bad("ZIP64 values without a ZIP64 locator") }
            let record = try u64(locator + 8)
            guard record >= 0, record + 56 <= n, u32(record) == 0x0606_4b50 else { throw bad("the ZIP64 end record is out of place") }
            entries = try u64(record + 32)
            dirSize = try u64(record + 40)
            dirOffset = try u64(record + 48)
        }
        guard dirOffset <= n, dirSize <= n - dirOffset else {
            throw bad("the central directory (\(dirSize) bytes at \(dirOffset)) lies outside the \(n)-byte file (truncated?)")
        }

        var members: [ZipMember] = []
        var at = dirOffset
        for _ in 0..<entries {
            guard at + 46 <= dirOffset + dirSize, u32(at) == 0x0201_4b50 else { throw bad("a central directory entry is damaged") }
            let flags = UInt16(u16(at + 8)), method = UInt16(u16(at + 10))
            let crc = UInt32(u32(at + 16))
            var compressed = u32(at + 20), size = u32(at + 24)
            let nameLength = u16(at + 28), extraLength = u16(at + 30), commentLength = u16(at + 32)
            var local = u32(at + 42)
            let end = at + 46 + nameLength + extraLength + commentLength
            guard end <= dirOffset + dirSize else { throw bad("a central directory entry runs past the directory") }
            let memberName = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(at + 46)..<(at + 46 + nameLength)]), as: UTF8.self)
            // ZIP64 extra field (id 1): 8-byte values for each 32-bit one
            // that reads 0xFFFFFFFF, in the order size, compressed, offset.
            var e = at + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e), length = u16(e + 2)
                guard e + 4 + length <= extraEnd else { throw bad("an extra field of \(memberName) is damaged") }
                if id == 1 {
                    var f = e + 4
                    for field in 0..<3 {
                        let wide = field == 0 ? size == 0xFFFF_FFFF : field == 1 ? compressed == 0xFFFF_FFFF : local == 0xFFFF_FFFF
                        guard wide else { continue }
                        guard f + 8 <= e + 4 + length else { throw bad("the ZIP64 field of \(memberName) is short") }
                        let v = try u64(f)
                        if field == 0 { size = v } else if field == 1 { compressed = v } else { local = v }
                        f += 8
                    }
                }
                e += 4 + length
            }
            members.append(
                ZipMember(name: memberName, method: method, compressedSize: compressed, size: size, crc32: crc, localHeaderOffset: local, flags: flags))
            at = end
        }
        return members
    }

    /// Where a member's (possibly compressed) bytes lie in the archive.
    static func dataRange(_ m: ZipMember, in bytes: UnsafeRawBufferPointer, name: String) throws -> Range<Int> {
        let o = m.localHeaderOffset
        guard o >= 0, o + 30 <= bytes.count, bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self) == UInt32(0x0403_4b50).littleEndian else {
            throw ParmlError.format("\(name): the local header of member \(m.name) is missing (truncated or damaged archive)")
        }
        let nameLength = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o + 26, as: UInt16.self)))
        let extraLength = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o + 28, as: UInt16.self)))
        let start = o + 30 + nameLength + extraLength
        guard start <= bytes.count, m.compressedSize <= bytes.count - start else {
            throw ParmlError.format(
                "\(name): member \(m.name) claims \(m.compressedSize) bytes at offset \(start), past the end of the \(bytes.count)-byte archive (truncated?)")
        }
        return start..<(start + m.compressedSize)
    }

    /// A member's uncompressed bytes: a range of the archive when stored
    /// (nil buffer), or a new buffer holding them inflated and checked
    /// against the member's CRC-32 and size.
    public static func contents(of m: ZipMember, in bytes: UnsafeRawBufferPointer, name: String) throws
        -> (bytes: UnsafeRawBufferPointer, buffer: AlignedBuffer?)
    {
        let member = "\(name)[\(m.name)]"
        if m.flags & 1 != 0 { throw ParmlError.unsupported("\(member): the member is encrypted") }
        let range = try dataRange(m, in: bytes, name: name)
        let packed = UnsafeRawBufferPointer(rebasing: bytes[range])
        switch m.method {
        case 0:
            guard m.size == m.compressedSize else {
                throw ParmlError.format("\(member): a stored member of \(m.compressedSize) bytes claims \(m.size) uncompressed")
            }
            return (packed, nil)
        case 8:
            // Deflate expands at most ~1032:1; a larger claim is a lie that
            // would otherwise reserve memory for nothing.
            guard m.size <= max(m.compressedSize, 1) * 1032 else {
                throw ParmlError.format("\(member): claims \(m.size) bytes from \(m.compressedSize) compressed, more than deflate can produce")
            }
            let buffer = try AlignedBuffer(count: m.size)
            try inflate(packed, into: buffer.bytes, name: member)
            let crc = chunkedCRC(UnsafeRawBufferPointer(buffer.bytes))
            guard crc == m.crc32 else {
                throw ParmlError.format("\(member): CRC-32 mismatch (the archive says \(hex(m.crc32)), the data gives \(hex(crc))): damaged data")
            }
            return (UnsafeRawBufferPointer(buffer.bytes), buffer)
        default:
            throw ParmlError.unsupported("\(member): compression method \(m.method) is not read (stored 0 and deflate 8 are)")
        }
    }

    /// zlib's crc32 over any length (its count argument is 32-bit).
    private static func chunkedCRC(_ b: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt = 0
        var at = 0
        while at < b.count {
            let n = min(b.count - at, 1 << 30)
            crc = crc32(crc, b.baseAddress!.advanced(by: at).assumingMemoryBound(to: UInt8.self), UInt32(n))
            at += n
        }
        return UInt32(crc)
    }

    /// Raw deflate (no zlib or gzip wrapper, as zip stores it) of `packed`
    /// into exactly `out.count` bytes.
    private static func inflate(_ packed: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer, name: String) throws {
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw ParmlError.outOfMemory("\(name): zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        var readAt = 0, written = 0
        var status = Z_OK
        let spare = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        defer { spare.deallocate() }
        while status == Z_OK {
            // zlib counts in 32 bits; feed and drain at most 1 GiB at a time.
            if stream.avail_in == 0 && readAt < packed.count {
                let n = min(packed.count - readAt, 1 << 30)
                stream.next_in = UnsafeMutablePointer(mutating: packed.baseAddress!.advanced(by: readAt).assumingMemoryBound(to: UInt8.self))
                stream.avail_in = UInt32(n)
                readAt += n
            }
            let room = min(out.count - written, 1 << 30)
            // Past the promised size, give zlib one spare byte to show there is more.
            stream.next_out = room > 0 ? out.baseAddress!.advanced(by: written).assumingMemoryBound(to: UInt8.self) : spare
            stream.avail_out = room > 0 ? UInt32(room) : 1
            let before = stream.avail_out
            status = CZlib.inflate(&stream, Z_NO_FLUSH)
            let produced = Int(before - stream.avail_out)
            if room == 0 && produced > 0 {
                throw ParmlError.format("\(name): inflates to more than the \(out.count) bytes the archive claims")
            }
            written += produced
            if status == Z_BUF_ERROR && stream.avail_in == 0 && readAt == packed.count {
                throw ParmlError.format("\(name): the compressed data ends early (\(written) of \(out.count) bytes; truncated?)")
            }
            if status == Z_BUF_ERROR { status = Z_OK }
        }
        guard status == Z_STREAM_END else {
            let message = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
            throw ParmlError.format("\(name): corrupt deflate data after \(written) bytes: \(message)")
        }
        guard written == out.count else {
            throw ParmlError.format("\(name): inflates to \(written) bytes, the archive claims \(out.count)")
        }
    }

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16, uppercase: true) }
}
