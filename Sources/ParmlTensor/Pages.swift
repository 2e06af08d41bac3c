#if canImport(Glibc)
import Glibc
#endif

/// Handing memory the program no longer needs back to the operating system
/// while keeping its addresses: views into an arena stay valid, and a page
/// handed back reads as zero when it is next touched (anonymous private
/// memory, which every tensor allocation is). ZeRO uses it for the parts
/// of the gradient and parameter arenas a rank does not own.
public enum Pages {
    /// Bytes of a page.
    public static let size: Int = {
        let s = sysconf(Int32(_SC_PAGESIZE))
        return s > 0 ? s : 4096
    }()

    /// Hands back every whole page inside `count` floats at `p`; the partial
    /// pages at either end stay. Their contents are lost (zero when read).
    /// Returns the bytes handed back.
    @discardableResult
    public static func release(_ p: UnsafeMutablePointer<Float>, count: Int) -> Int {
        guard let (start, bytes) = wholePages(p, count: count) else { return 0 }
        // MADV_DONTNEED cannot fail on mapped anonymous memory; if it did,
        // the pages simply stay resident with their old values.
        return madvise(start, bytes, MADV_DONTNEED) == 0 ? bytes : 0
    }

    /// Makes every whole page inside `count` floats at `p` resident and
    /// writable in one call, values unchanged (MADV_POPULATE_WRITE), before
    /// code is about to write them all: one call instead of a fault per
    /// page, and none of the two faults per page a read-then-write of a
    /// handed-back page takes (the zero page, then its copy). On a kernel
    /// without it (before Linux 5.14) nothing happens and the pages fault
    /// in as they are touched, as before.
    public static func populate(_ p: UnsafeMutablePointer<Float>, count: Int) {
        guard let (start, bytes) = wholePages(p, count: count) else { return }
        _ = madvise(start, bytes, MADV_POPULATE_WRITE)
    }

    /// The whole pages inside `count` floats at `p`: their start and bytes.
    private static func wholePages(_ p: UnsafeMutablePointer<Float>, count: Int) -> (UnsafeMutableRawPointer, Int)? {
        guard count > 0 else { return nil }
        let lo = UInt(bitPattern: p), hi = lo + UInt(count * MemoryLayout<Float>.stride)
        let page = UInt(size)
        let first = (lo + page - 1) / page * page, last = hi / page * page
        guard first < last, let start = UnsafeMutableRawPointer(bitPattern: first) else { return nil }
        return (start, Int(last - first))
    }

    /// Sets `count` floats at `p` to zero, handing back the whole pages
    /// among them instead of writing them.
    public static func zero(_ p: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        let floatsPerPage = size / MemoryLayout<Float>.stride
        let misalign = Int(UInt(bitPattern: p) % UInt(size)) / MemoryLayout<Float>.stride
        let head = Swift.min(count, misalign == 0 ? 0 : floatsPerPage - misalign)
        p.update(repeating: 0, count: head)
        let released = release(p + head, count: count - head) / MemoryLayout<Float>.stride
        (p + head + released).update(repeating: 0, count: count - head - released)
    }
}
