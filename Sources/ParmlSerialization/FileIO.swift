#if canImport(Glibc)
import Glibc
#endif
import CParmlProto
import ParmlTensor

/// Whole-file reads and atomic writes (promise 4 of DESIGN.md: a file is
/// either the old one or the complete new one, even after a crash).
public enum FileIO {
    /// Writes `bytes` to `path` atomically: the contents go to a file in the
    /// same directory that has no name until it is complete and on disk
    /// (O_TMPFILE), which is then linked under a temporary name and renamed
    /// over `path`; then the directory is fsynced.
    public static func writeAtomically(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        try writeAtomically(to: path) { fd, tmp in try writeAll(fd, bytes, path: tmp) }
    }

    /// The same, with `fill` writing the contents through the temporary
    /// file's descriptor (and its path, for messages). `fill` may run twice
    /// (where an unnamed file cannot be linked, the write is redone on a
    /// named one), so it must write the same bytes each time.
    ///
    /// Nothing is left behind by a writer killed at any moment: an unnamed
    /// file vanishes with its process, and the named temporaries
    /// (`<path>.tmp.<pid>.<n>`, which exist only between link and rename, or
    /// during the whole write where O_TMPFILE is unsupported) are held under
    /// an exclusive flock by their writer; each save first removes those of
    /// its target whose lock is free, i.e. whose writer is gone.
    public static func writeAtomically(to path: String, _ fill: (Int32, String) throws -> Void) throws {
        guard !path.isEmpty else { throw ParmlError.invalidArgument("path is empty") }
        removeStaleTemporaries(of: path)
        if try writeAtomically(to: path, unnamed: true, fill) { return }
        _ = try writeAtomically(to: path, unnamed: false, fill)
    }

    /// One attempt, through an unnamed file or a named one (the fallback;
    /// tests choose it); false when the unnamed file could not be created
    /// or linked (then nothing was changed and nothing is left).
    static func writeAtomically(to path: String, unnamed: Bool, _ fill: (Int32, String) throws -> Void) throws
        -> Bool
    {
        let dir = directory(of: path)
        var tmp = temporaryName(for: path)
        var fd: Int32 = -1
        var named = !unnamed
        if unnamed {
            fd = open(dir, oTmpfile | O_RDWR | O_CLOEXEC, 0o644)
            // Unsupported here (old kernel, some file systems): a named file.
            if fd < 0 { return false }
            guard flock(fd, LOCK_EX) == 0 else {
                close(fd)
                return false
            }
        } else {
            (fd, tmp) = try createLockedTemporary(for: path)
            named = true
        }
        do {
            try fill(fd, tmp)
            guard fsync(fd) == 0 else { throw ioError("fsync of '\(tmp)' failed") }
            if !named {
                guard linkUnnamed(fd, to: tmp) else {
                    close(fd)
                    return false
                }
                named = true
            }
        } catch {
            close(fd)
            if named { unlink(tmp) }
            throw error
        }
        // The lock stays held until the temporary name is gone.
        guard rename(tmp, path) == 0 else {
            let e = ioError("cannot rename '\(tmp)' to '\(path)'")
            unlink(tmp)
            close(fd)
            throw e
        }
        guard close(fd) == 0 else { throw ioError("close of '\(path)' failed") }
        // The rename is durable once the directory entry is on disk.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw ioError("cannot open directory '\(dir)' to fsync it") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw ioError("fsync of directory '\(dir)' failed") }
        return true
    }

    /// O_TMPFILE, which Glibc's Swift overlay does not import (a compound
    /// macro): __O_TMPFILE | O_DIRECTORY, with Linux's generic value.
    private static let oTmpfile: Int32 = 0o20000000 | O_DIRECTORY
    /// AT_EMPTY_PATH (a _GNU_SOURCE name the overlay leaves out).
    private static let atEmptyPath: Int32 = 0x1000

    /// `<path>.tmp.<pid>.<random>`: the pattern removeStaleTemporaries matches.
    private static func temporaryName(for path: String) -> String {
        "\(path).tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
    }

    /// A new named temporary for `path`, created and locked. A cleaner of
    /// another save may lock and remove it between the two; then it has no
    /// link left, and another name is tried.
    private static func createLockedTemporary(for path: String) throws -> (Int32, String) {
        for _ in 0..<16 {
            let tmp = temporaryName(for: path)
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                if errno == EEXIST { continue }
                throw ioError("cannot create '\(tmp)'")
            }
            var st = stat()
            if flock(fd, LOCK_EX) == 0 && fstat(fd, &st) == 0 && st.st_nlink > 0 { return (fd, tmp) }
            close(fd)
        }
        throw ParmlError.io("cannot create a temporary file beside '\(path)': each one was removed before it was locked")
    }

    /// Gives the unnamed file `fd` the name `tmp`: linkat with AT_EMPTY_PATH
    /// (needs CAP_DAC_READ_SEARCH), else through /proc/self/fd.
    private static func linkUnnamed(_ fd: Int32, to tmp: String) -> Bool {
        if linkat(fd, "", AT_FDCWD, tmp, atEmptyPath) == 0 { return true }
        return linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0
    }

    /// Removes `<path>.tmp.<pid>.<n>` files whose writer is gone (their
    /// flock is free: the kernel drops it when the writer dies), such as
    /// those a process killed between link and rename left, or writers of
    /// older versions that named the file for the whole write. Best effort:
    /// a directory that cannot be read or a file that cannot be opened is
    /// left as it is.
    static func removeStaleTemporaries(of path: String) {
        let dir = directory(of: path)
        let base = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
        let prefix = base + ".tmp."
        guard let d = opendir(dir) else { return }
        var stale: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: &e.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            guard name.hasPrefix(prefix) else { continue }
            let rest = name.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
            guard rest.count == 2, rest.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
            else { continue }
            stale.append(dir + "/" + name)
        }
        closedir(d)
        for tmp in stale {
            let fd = open(tmp, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat(), named = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, flock(fd, LOCK_EX | LOCK_NB) == 0,
                stat(tmp, &named) == 0, named.st_ino == st.st_ino, named.st_dev == st.st_dev
            else { continue }
            unlink(tmp)
        }
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
