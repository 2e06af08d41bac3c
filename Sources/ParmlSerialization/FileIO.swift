#if canImport(Glibc)
import Glibc
#endif
import CParmlProto
import ParmlTensor

/// Whole-file reads and atomic writes (promise 4 of DESIGN.md: a file is
/// either the old one or the complete new one, even after a crash).
public enum FileIO {
    /// Writes `bytes` to `path` atomically: a temporary file in the same
    /// directory, write, fsync, rename over `path`, fsync of the directory.
    public static func writeAtomically(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        try writeAtomically(to: path) { fd, tmp in try writeAll(fd, bytes, path: tmp) }
    }

    /// The same, with `fill` writing the contents through the temporary
    /// file's descriptor (and its path, for messages).
    public static func writeAtomically(to path: String, _ fill: (Int32, String) throws -> Void) throws {
        guard !path.isEmpty else { throw ParmlError.invalidArgument("path is empty") }
        let dir = directory(of: path)
        let tmp = "\(path).tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("cannot create '\(tmp)'") }
        do {
            try fill(fd, tmp)
            guard fsync(fd) == 0 else { throw ioError("fsync of '\(tmp)' failed") }
            guard close(fd) == 0 else {
                unlink(tmp)
                throw ioError("close of '\(tmp)' failed")
            }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let e = ioError("cannot rename '\(tmp)' to '\(path)'")
            unlink(tmp)
            throw e
        }
        // The rename is durable once the directory entry is on disk.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw ioError("cannot open directory '\(dir)' to fsync it") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw ioError("fsync of directory '\(dir)' failed") }
    }

    /// Reads a whole regular file (or pipe) into malloc'd memory.
    public static func read(_ path: String) throws -> EncodedBytes { try read(path, crcSkippingLast: nil) }

    /// Reads of a regular file: 1 MiB fits in L2, so each piece is
    /// checksummed while still in cache and while the disk reads ahead.
    static let readChunk = 1 << 20

    /// Reads a whole file and, with `crcSkippingLast: k`, computes the
    /// CRC-32 of all but its last k bytes on the way (EncodedBytes.crc; regular files only).
    static func read(_ path: String, crcSkippingLast k: Int?) throws -> EncodedBytes {
        guard !path.isEmpty else { throw ParmlError.invalidArgument("path is empty") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("cannot open '\(path)'") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("cannot stat '\(path)'") }
        guard (st.st_mode & S_IFMT) != S_IFDIR else { throw ParmlError.io("'\(path)' is a directory") }
        if (st.st_mode & S_IFMT) == S_IFREG {
            let n = Int(st.st_size)
            let out = try EncodedBytes(count: n)
            let p = out.pointer!
            let covered = k.map { max(n - $0, 0) } ?? 0
            var c: UInt32 = 0
            var done = 0
            while done < n {
                let r = Glibc.read(fd, p + done, min(n - done, readChunk))
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { throw r == 0 ? ParmlError.io("'\(path)' shrank while being read") : ioError("read of '\(path)' failed") }
                if done < covered { c = pml_crc32(c, p + done, min(r, covered - done)) }
                done += r
            }
            if k != nil { out.crc = (covered, c) }
            return out
        }
        // Pipes and other streams: read until end of file.
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let r = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if r < 0 && errno == EINTR { continue }
            guard r >= 0 else { throw ioError("read of '\(path)' failed") }
            if r == 0 { break }
            data.append(contentsOf: chunk[0..<r])
        }
        let out = try EncodedBytes(count: data.count)
        data.withUnsafeBytes { if let b = $0.baseAddress { UnsafeMutableRawPointer(out.pointer!).copyMemory(from: b, byteCount: $0.count) } }
        return out
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let w = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if w < 0 && errno == EINTR { continue }
            guard w > 0 else { throw ioError("write to '\(path)' failed") }
            done += w
        }
    }

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }

    static func ioError(_ what: String) -> ParmlError {
        ParmlError.io("\(what): \(String(cString: strerror(errno)))")
    }
}
