import CParmlTypes
import ParmlTensor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The kinds of handle the C API hands out.
enum HandleKind: String {
    case tensor, model, trainer, dataset, advice
}

/// Every live handle, by number, with its object and kind.
///
/// A handle is a number the registry never hands out twice, not an
/// address: a freed handle stays unknown forever, even after the allocator
/// reuses its object's memory. Looking a handle up here before touching it
/// turns a freed, foreign or wrong-kind value into an error instead of a
/// crash; the cost is one uncontended lock per lookup.
///
/// A lookup inside an API call also marks the handle as held by that call
/// until the call returns (`guarded` ends it), so a second call on the same
/// handle, from another thread or from a callback, gets PARML_ERR_STATE
/// instead of racing the first. Looking up a trainer holds its model too:
/// the trainer updates that model in place. While fit runs its callback it
/// lends its handles (`lend`): calls from that callback that only read or
/// save (`FitCallbackUse.allowed`) may use them; the others still get
/// PARML_ERR_STATE, since they would change what fit is running on.
final class HandleRegistry: Sendable {
    static let shared = HandleRegistry()

    private struct Entry {
        let object: AnyObject
        let kind: HandleKind
        /// A class, so that holding changes no dictionary value (which
        /// would allocate on every call).
        let hold = HandleHold()
    }

    private struct Table {
        var entries: [UInt: Entry] = [:]
        /// Handle numbers of registered objects, to find a trainer's model.
        var numbers: [ObjectIdentifier: UInt] = [:]
        /// Numbers are multiples of 16 (they look like aligned pointers to
        /// hosts that print them) and count up from 16; 2^60 creates away
        /// from wrapping.
        var next: UInt = 16
    }

    /// Strong references cross the lock in this box; the table keeps them.
    private struct Found: @unchecked Sendable { let object: AnyObject }

    private let table = PthreadLocked(Table())

    /// Takes a strong reference to `object` (dropped by `release`) and
    /// returns its new handle.
    func register(_ object: AnyObject, as kind: HandleKind) -> OpaquePointer {
        let box = Found(object: object)
        let number = table.withLock { t -> UInt in
            let n = t.next
            t.next += 16
            t.entries[n] = Entry(object: box.object, kind: kind)
            t.numbers[ObjectIdentifier(box.object)] = n
            return n
        }
        return OpaquePointer(bitPattern: number)!
    }

    /// The object behind a live handle of `kind`, held by the calling API
    /// call until it returns; throws for NULL, unknown, freed or wrong-kind
    /// handles, and `.state` for a handle another call holds.
    func object<T: AnyObject>(
        _ handle: OpaquePointer?, _ kind: HandleKind, as: T.Type, name: String, inFitCallback use: FitCallbackUse = .refused
    ) throws -> T {
        guard let handle else { throw ParmlError.invalidArgument("\(name) is NULL") }
        let number = UInt(bitPattern: handle)
        let call = CallScope.current()
        let found: Found = try table.withLock { t throws(ParmlError) -> Found in
            guard let entry = t.entries[number] else {
                throw ParmlError.invalidArgument("\(name) is not a live parml handle (freed or never created)")
            }
            guard entry.kind == kind else {
                throw ParmlError.invalidArgument("\(name) is a parml_\(entry.kind.rawValue), expected a parml_\(kind.rawValue)")
            }
            try hold(entry, by: call, name: name, use: use)
            if kind == .trainer, let owned = (entry.object as? ModelOwner)?.ownedModel,
                let modelNumber = t.numbers[ObjectIdentifier(owned)], let model = t.entries[modelNumber]
            {
                try hold(model, by: call, name: "\(name)'s model", use: use)
            }
            return Found(object: entry.object)
        }
        guard let object = found.object as? T else {
            throw ParmlError.internal("\(name) has kind \(kind.rawValue) but another type")
        }
        return object
    }

    /// Marks a handle as held by `call` (a no-op outside an API call or
    /// when that call holds it already).
    private func hold(_ entry: Entry, by call: CallScope?, name: @autoclosure () -> String, use: FitCallbackUse) throws(ParmlError) {
        guard let call, let token = call.token else { return }
        let hold = entry.hold
        if hold.token == token { return }
        if hold.lent && call.runs(hold.token) {
            // A fit further out on this thread lent it to its callback.
            guard use == .allowed else {
                throw ParmlError.state(
                    "\(call.function) cannot use \(name()) inside the callback of the \(hold.function) running on it: it would change "
                        + "what fit is running on; a callback may evaluate, save, read parameters and set the learning rate (docs/callbacks.md)")
            }
            return
        }
        guard hold.token == 0 else {
            throw ParmlError.state(
                "\(name()) is in use by a call to \(hold.function) that has not returned "
                    + "(a handle is used by one thread at a time, and not from inside its own callback)")
        }
        hold.token = token
        hold.function = call.function
        call.held.append(hold)
    }

    /// Runs `body` (a fit callback) with the handles the calling thread's
    /// innermost API call holds lent to the calls `body` makes (see `hold`).
    func lend<R>(_ body: () throws -> R) rethrows -> R {
        guard let call = CallScope.current(), call.token != nil else { return try body() }
        let start = call.marks.last ?? 0
        let lent = Array(call.held[start...])
        table.withLock { _ in for h in lent { h.lent = true } }
        defer { table.withLock { _ in for h in lent { h.lent = false } } }
        return try body()
    }

    /// Whether `handle` is a live handle of `kind` (not freed).
    func isLive(_ handle: OpaquePointer?, _ kind: HandleKind) -> Bool {
        guard let handle else { return false }
        let number = UInt(bitPattern: handle)
        return table.withLock { t in t.entries[number]?.kind == kind }
    }

    /// Lets go of the handles the innermost call of `call` held.
    func endCall(_ call: CallScope) {
        let token = call.token ?? 0
        let start = call.marks.last ?? 0
        if call.held.count > start {
            table.withLock { _ in
                for hold in call.held[start...] where hold.token == token { hold.token = 0 }
            }
            call.held.removeSubrange(start...)
        }
        call.end()
    }

    /// Drops the reference taken by `register`. NULL, unknown and
    /// wrong-kind handles are ignored, so a double free is harmless. A call
    /// still running on the handle in another thread keeps the object alive
    /// until it returns.
    func release(_ handle: OpaquePointer?, _ kind: HandleKind) {
        guard let handle else { return }
        let number = UInt(bitPattern: handle)
        // The object dies outside the lock: its deinit may be long (a
        // trainer joins its rank threads).
        let removed: Found? = table.withLock { t in
            guard let entry = t.entries[number], entry.kind == kind else { return nil }
            t.entries[number] = nil
            if t.numbers[ObjectIdentifier(entry.object)] == number { t.numbers[ObjectIdentifier(entry.object)] = nil }
            return Found(object: entry.object)
        }
        withExtendedLifetime(removed) {}
    }
}

/// Which call holds a handle (read and written under the registry's lock).
private final class HandleHold {
    /// The call's token, 0 when no call holds the handle.
    var token: UInt64 = 0
    /// The C function name of that call, for the error message.
    var function: StaticString = ""
    /// Lent by that call (a fit) to the calls of its callback.
    var lent = false
}

/// Whether a call may use a handle that fit has lent to its callback:
/// `.allowed` for calls that read or save (evaluate, save a model or
/// checkpoint, get parameters, predict) and for set_learning_rate;
/// everything else is refused with PARML_ERR_STATE.
enum FitCallbackUse {
    case refused, allowed
}

/// An object that updates a model in place (a trainer): holding its handle
/// holds the model's handle too.
protocol ModelOwner: AnyObject {
    var ownedModel: AnyObject { get }
}

/// The API calls running on one thread, innermost last (a progress callback
/// may call into the library while `parml_trainer_fit` runs), and the
/// handles each holds. One per thread, kept in thread-specific storage;
/// its arrays keep their capacity, so a call allocates nothing.
final class CallScope: @unchecked Sendable {  // confined to its thread
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { p in if let p { Unmanaged<CallScope>.fromOpaque(p).release() } }
        return key
    }()
    private static let tokens = Atomic<UInt64>(1)

    /// Tokens of the running calls, innermost last.
    private var tokens: [UInt64] = []
    private var functions: [StaticString] = []
    /// Where each running call's handles start in `held`.
    fileprivate var marks: [Int] = []
    fileprivate var held: [HandleHold] = []

    private init() {
        tokens.reserveCapacity(8)
        functions.reserveCapacity(8)
        marks.reserveCapacity(8)
        held.reserveCapacity(32)
    }

    /// The calling thread's scope (created on its first call), nil only if
    /// memory for it could not be had.
    static func current() -> CallScope? {
        if let p = pthread_getspecific(key) { return Unmanaged<CallScope>.fromOpaque(p).takeUnretainedValue() }
        let scope = CallScope()
        guard pthread_setspecific(key, Unmanaged.passRetained(scope).toOpaque()) == 0 else { return nil }
        return scope
    }

    var token: UInt64? { tokens.last }

    /// Whether the call with `token` runs on this thread (further out).
    func runs(_ token: UInt64) -> Bool { token != 0 && tokens.contains(token) }
    var function: StaticString { functions.last ?? "" }

    func begin(_ function: StaticString) {
        tokens.append(CallScope.tokens.wrappingAdd(1, ordering: .relaxed).oldValue)
        functions.append(function)
        marks.append(held.count)
    }

    fileprivate func end() {
        tokens.removeLast()
        functions.removeLast()
        marks.removeLast()
    }
}

/// A value behind a pthread mutex. The registry's lock orders one thread's
/// call on a handle before another's; ThreadSanitizer sees that order
/// through a pthread mutex, not through the Synchronization module's
/// futex-based Mutex (it reported the second call's reads as races).
private final class PthreadLocked<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
