import CParmlTypes

/// The library's version as "MAJOR.MINOR.PATCH"; static storage, never NULL.
/// Compare with PARML_VERSION_STRING to detect a header/library mismatch.
/// Thread-safe. Since: 0.1.
@c(parml_version_string)
public func parmlVersionString() -> UnsafePointer<CChar> {
    UnsafePointer(versionCString)
}

/// PARML_VERSION_STRING from parml_types.h, copied once to storage that
/// lives as long as the process (Swift imports the macro as a String).
/// nonisolated(unsafe): written once by the global initialiser, then only read.
nonisolated(unsafe) private let versionCString: UnsafeMutablePointer<CChar> = strdup(PARML_VERSION_STRING)!

/// The library's version as MAJOR*10000 + MINOR*100 + PATCH (compare with
/// PARML_VERSION_NUMBER). Thread-safe. Since: 0.1.
@c(parml_version_number)
public func parmlVersionNumber() -> Int32 {
    Int32(PARML_VERSION_MAJOR * 10000 + PARML_VERSION_MINOR * 100 + PARML_VERSION_PATCH)
}

/// Frees a buffer the library handed out (text from parml_model_summary,
/// ...). NULL is a no-op. Thread-safe. Since: 0.1.
@c(parml_buffer_free)
public func parmlBufferFree(_ buffer: UnsafeMutableRawPointer?) {
    free(buffer)
}

#if canImport(Glibc)
import Glibc
#endif
