#if canImport(Glibc)
import Glibc
#endif
import CParmlProto
import ParmlTensor

/// Owns the C memory of a protobuf-c message being built for packing
/// (message structs, pointer arrays, strings) and frees it all at once.
/// Tensor data is not copied: `bytes` fields point at the tensors, which the
/// caller keeps alive until packing is done.
final class PackArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    /// `count` zeroed values of T.
    func allocate<T>(_ type: T.Type, count: Int) throws -> UnsafeMutablePointer<T> {
        guard let raw = calloc(max(count, 1), MemoryLayout<T>.stride) else {
            throw ParmlError.outOfMemory("could not allocate \(count) message fields")
        }
        blocks.append(raw)
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// A NUL-terminated copy of `s`.
    func string(_ s: String) throws -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(s.utf8CString)
        let p = try allocate(CChar.self, count: utf8.count)
        utf8.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: utf8.count) }
        return p
    }
}

/// Bytes in malloc'd memory: what the C API hands out (freed with
/// parml_buffer_free) or writes to a file. Freed on deinit unless taken.
public final class EncodedBytes {
    public private(set) var pointer: UnsafeMutablePointer<UInt8>?
    public let count: Int
    /// The CRC-32 of the first `covered` bytes, when computed as they were
    /// read (FileIO.read(_:crcSkippingLast:)).
    public internal(set) var crc: (covered: Int, value: UInt32)?

    init(count: Int) throws {
        guard let raw = pml_alloc_bytes(count) else { throw ParmlError.outOfMemory("could not allocate \(count) bytes") }
        pointer = raw.bindMemory(to: UInt8.self, capacity: max(count, 1))
        self.count = count
    }

    deinit { free(pointer) }

    /// Hands the memory to the caller, who frees it with free().
    public func take() -> UnsafeMutablePointer<UInt8>? {
        defer { pointer = nil }
        return pointer
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: pointer == nil ? 0 : count) }
}
