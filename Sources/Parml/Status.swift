import CParmlTypes
import ParmlTensor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// The error half of the ABI: every @c function runs its body through `guarded`,
// which turns a thrown ParmlError into a status code and keeps the message
// in a per-thread buffer that parml_last_error() returns. No Swift error
// crosses the boundary.

private let messageCapacity = 2048

/// One buffer per thread, freed by pthread when the thread exits.
private let errorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { p in free(p) }
    return key
}()

private func threadBuffer() -> UnsafeMutablePointer<CChar>? {
    if let p = pthread_getspecific(errorKey) { return p.assumingMemoryBound(to: CChar.self) }
    guard let raw = calloc(messageCapacity, 1) else { return nil }
    pthread_setspecific(errorKey, raw)
    return raw.assumingMemoryBound(to: CChar.self)
}

private func store(_ message: String) {
    guard let buf = threadBuffer() else { return }
    // Whole characters only: a cut never leaves half a UTF-8 sequence.
    var utf8: [UInt8] = []
    for scalar in message.unicodeScalars {
        guard utf8.count + UTF8.width(scalar) <= messageCapacity - 1 else { break }
        UTF8.encode(scalar) { utf8.append($0) }
    }
    utf8.withUnsafeBufferPointer { src in
        if let base = src.baseAddress { UnsafeMutableRawPointer(buf).copyMemory(from: base, byteCount: src.count) }
    }
    buf[utf8.count] = 0
}

func code(of error: ParmlError) -> parml_status {
    switch error {
    case .invalidArgument: PARML_ERR_INVALID_ARGUMENT
    case .shape: PARML_ERR_SHAPE
    case .unsupported: PARML_ERR_UNSUPPORTED
    case .outOfMemory: PARML_ERR_OUT_OF_MEMORY
    case .io: PARML_ERR_IO
    case .format: PARML_ERR_FORMAT
    case .state: PARML_ERR_STATE
    case .blas: PARML_ERR_BLAS
    case .cancelled: PARML_ERR_CANCELLED
    case .internal: PARML_ERR_INTERNAL
    case .communication: PARML_ERR_COMMUNICATION
    case .nonFinite: PARML_ERR_NONFINITE
    case .authMissing: PARML_ERR_AUTH_MISSING
    case .authKey: PARML_ERR_AUTH_KEY
    case .authFailed: PARML_ERR_AUTH_FAILED
    }
}

/// Runs an API body; returns PARML_OK or the error's code with its message
/// stored for parml_last_error(), prefixed by the function name.
@inline(__always)
func guarded(_ function: StaticString, _ body: () throws -> Void) -> parml_status {
    // Handles looked up in `body` stay held by this call until it returns.
    let call = CallScope.current()
    call?.begin(function)
    defer { if let call { HandleRegistry.shared.endCall(call) } }
    do {
        try body()
        return PARML_OK
    } catch let e as ParmlError {
        store("\(function): \(e.message)")
        return code(of: e)
    } catch {
        store("\(function): \(error)")
        return PARML_ERR_INTERNAL
    }
}

/// Throws `.invalidArgument` naming the parameter when a pointer is NULL.
@inline(__always)
func nonNull<T>(_ p: T?, _ name: String) throws -> T {
    guard let p else { throw ParmlError.invalidArgument("\(name) is NULL") }
    return p
}

/// Returns the message of the calling thread's last failed call ("" if none).
/// The text stays valid until this thread's next failing call. Thread-safe.
@c(parml_last_error)
public func parmlLastError() -> UnsafePointer<CChar> {
    guard let buf = threadBuffer() else { return staticString("out of memory") }
    return UnsafePointer(buf)
}

/// A static English name for a status code ("PARML_OK", ...); never NULL,
/// "unknown status" for codes this version does not know. Thread-safe.
@c(parml_status_string)
public func parmlStatusString(_ status: parml_status) -> UnsafePointer<CChar> {
    switch status {
    case PARML_OK: staticString("PARML_OK: success")
    case PARML_ERR_INVALID_ARGUMENT: staticString("PARML_ERR_INVALID_ARGUMENT: invalid argument")
    case PARML_ERR_SHAPE: staticString("PARML_ERR_SHAPE: shapes do not fit")
    case PARML_ERR_UNSUPPORTED: staticString("PARML_ERR_UNSUPPORTED: not supported by this build")
    case PARML_ERR_OUT_OF_MEMORY: staticString("PARML_ERR_OUT_OF_MEMORY: out of memory")
    case PARML_ERR_IO: staticString("PARML_ERR_IO: input/output error")
    case PARML_ERR_FORMAT: staticString("PARML_ERR_FORMAT: corrupt or foreign data")
    case PARML_ERR_STATE: staticString("PARML_ERR_STATE: call not valid in this state")
    case PARML_ERR_BLAS: staticString("PARML_ERR_BLAS: OpenBLAS unavailable")
    case PARML_ERR_CANCELLED: staticString("PARML_ERR_CANCELLED: cancelled by a callback")
    case PARML_ERR_INTERNAL: staticString("PARML_ERR_INTERNAL: internal error")
    case PARML_ERR_COMMUNICATION: staticString("PARML_ERR_COMMUNICATION: a rank failed or timed out")
    case PARML_ERR_NONFINITE: staticString("PARML_ERR_NONFINITE: the step's loss or gradients were not finite; nothing was updated")
    case PARML_ERR_AUTH_MISSING: staticString("PARML_ERR_AUTH_MISSING: a key was given but the file carries no authentication tag")
    case PARML_ERR_AUTH_KEY: staticString("PARML_ERR_AUTH_KEY: the file is authenticated with another key, or needs one")
    case PARML_ERR_AUTH_FAILED: staticString("PARML_ERR_AUTH_FAILED: the authentication tag does not verify: the file was altered")
    default: staticString("unknown status")
    }
}

/// StaticString literals live in the binary's read-only data for the
/// program's lifetime, so handing out their address is safe.
@inline(__always)
func staticString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}
