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
        guard count > 0 else { return 0 }
        let lo = UInt(bitPattern: p), hi = lo + UInt(count * MemoryLayout<Float>.stride)
        let page = UInt(size)
        let first = (lo + page - 1) / page * page, last = hi / page * page
        guard first < last, let start = UnsafeMutableRawPointer(bitPattern: first) else { return 0 }
        // MADV_DONTNEED cannot fail on mapped anonymous memory; if it did,
        // the pages simply stay resident with their old values.
        return madvise(start, Int(last - first), MADV_DONTNEED) == 0 ? Int(last - first) : 0
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
