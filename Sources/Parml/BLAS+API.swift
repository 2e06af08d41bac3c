import CParmlTypes
import ParmlTensor

/// Loads OpenBLAS if needed and reports the kernel family it runs
/// ("SkylakeX", "Haswell", ...) in *core_out: static text, never freed.
/// parml picks the kernels from the CPU unless OPENBLAS_CORETYPE is set.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL core_out), PARML_ERR_BLAS
/// (OpenBLAS cannot be loaded). Thread-safe. Since: 0.1.
@c(parml_blas_core)
public func parmlBlasCore(_ core_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> parml_status {
    guarded("parml_blas_core") {
        let out = try nonNull(core_out, "core_out")
        try BLAS.ensureLoaded()
        out.pointee = BLAS.coreNameCString
    }
}

/// Sets the threads this process's products and element-wise work use
/// (1...1024): parml's own persistent threads, with OpenBLAS single-threaded
/// inside each; the count changes no bit of a result. Trainers set it from
/// their strategy when created; this overrides it until the next one,
/// except for deterministic trainers, which set their own count again
/// before each step and evaluation. parml caps it at 64; read the value in
/// effect with parml_blas_threads.
/// Errors: PARML_ERR_INVALID_ARGUMENT (outside 1...1024), PARML_ERR_BLAS
/// (OpenBLAS cannot be loaded). Since: 0.1.
@c(parml_blas_set_threads)
public func parmlBlasSetThreads(_ threads: Int32) -> parml_status {
    guarded("parml_blas_set_threads") {
        guard threads >= 1, threads <= 1024 else { throw ParmlError.invalidArgument("threads must be in 1...1024, got \(threads)") }
        try BLAS.ensureLoaded()
        BLAS.threads = Int(threads)
    }
}

/// Loads OpenBLAS if needed and writes the number of threads in effect
/// (parml_blas_set_threads) to *threads_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL threads_out), PARML_ERR_BLAS
/// (OpenBLAS cannot be loaded). Since: 0.1.
@c(parml_blas_threads)
public func parmlBlasThreads(_ threads_out: UnsafeMutablePointer<Int32>?) -> parml_status {
    guarded("parml_blas_threads") {
        let out = try nonNull(threads_out, "threads_out")
        try BLAS.ensureLoaded()
        out.pointee = Int32(BLAS.threads)
    }
}
