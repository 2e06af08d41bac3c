#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

/// Monotonic seconds, for throughput figures (never for correctness).
public enum Clock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// CPU seconds the calling thread has run: unlike `now`, not the time it
    /// waited for a core that other processes held.
    public static func threadCPU() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    public static var onlineCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The online cores this process may run on: fewer where mpirun bound
    /// it to a core (its default for jobs of 1 or 2 processes) or taskset
    /// narrowed it. All of them where the mask cannot be read.
    public static var allowedCores: Int {
        guard let mask = WorkerPool.allowedCPUs(onlineCores) else { return onlineCores }
        return max(1, mask.filter { $0 }.count)
    }
}
