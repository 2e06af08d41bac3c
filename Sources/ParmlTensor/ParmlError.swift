/// Every failure the engine reports. The C ABI maps each case to one
/// `parml_status` code and keeps the message for `parml_last_error()`.
public enum ParmlError: Error, Equatable, CustomStringConvertible {
    case invalidArgument(String)
    case shape(String)
    case unsupported(String)
    case outOfMemory(String)
    case io(String)
    case format(String)
    case state(String)
    case blas(String)
    case cancelled(String)
    case `internal`(String)
    /// A collective failed: a peer rank failed or did not answer in time.
    case communication(String)
    /// A step's loss or gradients were not finite; it updated nothing.
    case nonFinite(String)
    /// A key was given, but the file carries no authentication tag.
    case authMissing(String)
    /// The file is authenticated under another key, or no key was given for it.
    case authKey(String)
    /// The tag does not verify under the right key: bytes were altered.
    case authFailed(String)

    public var message: String {
        switch self {
        case .invalidArgument(let m), .shape(let m), .unsupported(let m), .outOfMemory(let m),
            .io(let m), .format(let m), .state(let m), .blas(let m), .cancelled(let m),
            .internal(let m), .communication(let m), .nonFinite(let m), .authMissing(let m), .authKey(let m),
            .authFailed(let m):
            return m
        }
    }

    public var description: String { message }

    /// The case's name ("shape", "io", ...), for tests and logs.
    public var kind: String {
        switch self {
        case .invalidArgument: "invalidArgument"
        case .shape: "shape"
        case .unsupported: "unsupported"
        case .outOfMemory: "outOfMemory"
        case .io: "io"
        case .format: "format"
        case .state: "state"
        case .blas: "blas"
        case .cancelled: "cancelled"
        case .internal: "internal"
        case .communication: "communication"
        case .nonFinite: "nonFinite"
        case .authMissing: "authMissing"
        case .authKey: "authKey"
        case .authFailed: "authFailed"
        }
    }
}
