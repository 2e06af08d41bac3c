#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

/// A whole regular file mapped read-only into memory. Tensors that view its
/// bytes keep it alive as their owner; the mapping ends when the last one
/// goes. Pages are read from disk when first touched, so mapping a file
/// costs no memory up front. The file must not be truncated or rewritten
/// while mapped: a page past a new end reads as SIGBUS (the OS's rule).
public final class MappedFile {
    public let path: String
    /// The file's bytes (count 0 for an empty file, which maps nothing).
    public let bytes: UnsafeRawBufferPointer

    public init(cPath: UnsafePointer<CChar>, displayName: String) throws {
        path = displayName
        func ioError(_ what: String) -> ParmlError { ParmlError.io("\(displayName): \(what): \(String(cString: strerror(errno)))") }
        let fd = open(cPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("cannot open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ParmlError.io("\(displayName): not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { throw ioError("cannot map") }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let p = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: p), bytes.count) }
    }

    /// Drops this process's copies of the pages read so far (they stay in
    /// the page cache while memory allows; a later read maps them again):
    /// resident memory after a pass over a large file, given back.
    public func release() {
        if let p = bytes.baseAddress { _ = madvise(UnsafeMutableRawPointer(mutating: p), bytes.count, MADV_DONTNEED) }
    }
}

/// Memory from posix_memalign (64-byte aligned), freed with its last viewer:
/// the decompressed bytes of an archive member.
public final class AlignedBuffer {
    public let bytes: UnsafeMutableRawBufferPointer

    public init(count: Int) throws {
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, max(count, 1)) == 0, let raw else {
            throw ParmlError.outOfMemory("could not allocate \(count) bytes")
        }
        bytes = UnsafeMutableRawBufferPointer(start: raw, count: count)
    }

    deinit { free(bytes.baseAddress) }
}
