import CParmlTypes
import ParmlTensor
import Synchronization

/// The kinds of handle the C API hands out.
enum HandleKind: String {
    case tensor, model, trainer, dataset
}

/// Every live handle, by address, with its kind. Looking a handle up here
/// before touching it turns a freed, foreign or wrong-kind pointer into an
/// error instead of a crash; the cost is one uncontended lock per call.
final class HandleRegistry: Sendable {
    static let shared = HandleRegistry()
    /// Keys are handle addresses as integers (pointers are not Sendable).
    private let live = Mutex<[UInt: HandleKind]>([:])

    /// Retains `object` (+1, released by `release`) and returns its handle.
    func register(_ object: AnyObject, as kind: HandleKind) -> OpaquePointer {
        let p = Unmanaged.passRetained(object).toOpaque()
        live.withLock { $0[UInt(bitPattern: p)] = kind }
        return OpaquePointer(p)
    }

    /// The object behind a live handle of `kind`; throws for NULL, unknown,
    /// freed or wrong-kind handles.
    func object<T: AnyObject>(_ handle: OpaquePointer?, _ kind: HandleKind, as: T.Type, name: String) throws -> T {
        guard let handle else { throw ParmlError.invalidArgument("\(name) is NULL") }
        let p = UnsafeMutableRawPointer(handle)
        let found = live.withLock { $0[UInt(bitPattern: p)] }
        guard let found else {
            throw ParmlError.invalidArgument("\(name) is not a live parml handle (freed or never created)")
        }
        guard found == kind else {
            throw ParmlError.invalidArgument("\(name) is a parml_\(found.rawValue), expected a parml_\(kind.rawValue)")
        }
        // Balanced: the registry's +1 keeps the object alive while it is registered.
        guard let object = Unmanaged<AnyObject>.fromOpaque(p).takeUnretainedValue() as? T else {
            throw ParmlError.internal("\(name) has kind \(kind.rawValue) but another type")
        }
        return object
    }

    /// Drops the +1 taken by `register`. NULL, unknown and wrong-kind
    /// handles are ignored, so a double free is harmless.
    func release(_ handle: OpaquePointer?, _ kind: HandleKind) {
        guard let handle else { return }
        let p = UnsafeMutableRawPointer(handle)
        let removed = live.withLock { table -> Bool in
            guard table[UInt(bitPattern: p)] == kind else { return false }
            table[UInt(bitPattern: p)] = nil
            return true
        }
        if removed { Unmanaged<AnyObject>.fromOpaque(p).release() }
    }
}
