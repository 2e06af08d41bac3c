#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on CLOCK_MONOTONIC (vDSO: no system call). Here, the lowest
/// engine module, so that the products' own timing (`BalancedRowCut`) and
/// the threads backend (ParmlParallel) read one clock.
@inline(__always)
package func monotonicNanoseconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec &* 1_000_000_000 &+ ts.tv_nsec
}
