import CParmlProto
import ParmlTensor
import _CParmlCrypto

/// Authenticated files (docs/file-format.md, "The auth field"): a Model or
/// Checkpoint saved with a key carries, as its last field before crc32, an
/// `Authentication` message: a key id and HMAC-SHA-256(key, every byte
/// before the field). Loading with the key recomputes both; loading without
/// one refuses the file. The key is borrowed for the call and never copied
/// into a file, a message or a log.
enum FileAuthentication {
    /// The auth field's bytes: field 14 (length-delimited), 44 bytes of
    /// payload: key_id (field 1, 8 bytes) then hmac_sha256 (field 2, 32).
    static let fieldTag: UInt8 = 14 << 3 | 2
    static let keyIDSize = 8, macSize = 32
    static let payloadSize = 2 + keyIDSize + 2 + macSize
    static let fieldSize = 2 + payloadSize
    /// Shorter keys are refused: 128 bits is the least HMAC-SHA-256's
    /// strength calls for (NIST SP 800-107).
    static let minimumKeySize = 16

    /// Refuses a key that cannot authenticate anything (the message gives
    /// its length only).
    static func check(_ key: UnsafeRawBufferPointer) throws {
        guard key.baseAddress != nil || key.count == 0 else { throw ParmlError.invalidArgument("key is NULL") }
        guard key.count >= minimumKeySize else {
            throw ParmlError.invalidArgument("the key is \(key.count) bytes; an HMAC-SHA-256 key must be at least \(minimumKeySize)")
        }
    }

    /// HMAC-SHA-256 of `data` under `key`; .unsupported when libcrypto cannot be loaded.
    static func mac(_ key: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer) throws -> [UInt8] {
        var err = [CChar](repeating: 0, count: 512)
        guard pml_crypto_load(&err, err.count) == 0 else {
            let reason = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ParmlError.unsupported("authenticated files need OpenSSL's libcrypto: \(reason)")
        }
        var out = [UInt8](repeating: 0, count: macSize)
        guard pml_hmac_sha256(key.baseAddress, key.count, data.baseAddress, data.count, &out) == 0 else {
            throw ParmlError.internal("libcrypto's HMAC-SHA-256 failed")
        }
        return out
    }

    /// The key's id: which key signed a file, without saying anything of it
    /// (a PRF output, like the tag). The message cannot be a file body
    /// (those start with 0x0A, the magic's field).
    static func keyID(_ key: UnsafeRawBufferPointer) throws -> [UInt8] {
        let label = Array("parml key id".utf8)
        return Array(try label.withUnsafeBytes { try mac(key, $0) }.prefix(keyIDSize))
    }

    /// The auth field for a file whose bytes before it are `body`.
    static func field(for body: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) throws -> [UInt8] {
        try check(key)
        let id = try keyID(key), tag = try mac(key, body)
        return [fieldTag, UInt8(payloadSize), 0x0A, UInt8(keyIDSize)] + id + [0x12, UInt8(macSize)] + tag
    }

    /// Where a file's auth field lies, found by walking its top-level fields
    /// (the bytes before the crc32 trailer): nil when the last one is not
    /// field 14. Throws .format for a field 14 anywhere else, or one whose
    /// payload is not the layout writers produce, or for fields that do not
    /// add up to the bytes before the trailer (what unpacking would refuse).
    static func locate(_ bytes: UnsafeRawBufferPointer, what: String) throws -> (bodyEnd: Int, keyID: Range<Int>, mac: Range<Int>)? {
        let end = bytes.count - FileFormat.trailerSize
        let broken = ParmlError.format("the \(what) is not a valid protobuf message (\(bytes.count) bytes: truncated or corrupt)")
        var at = 0, last: (start: Int, number: UInt64, payload: Range<Int>)?
        while at < end {
            let start = at
            guard let key = varint(bytes, &at, end) else { throw broken }
            let number = key >> 3
            var payload = at..<at
            switch key & 7 {
            case 0: guard varint(bytes, &at, end) != nil else { throw broken }
            case 1: at += 8
            case 5: at += 4
            case 2:
                guard let n = varint(bytes, &at, end), n <= UInt64(end - at) else { throw broken }
                payload = at..<(at + Int(n))
                at += Int(n)
            default: throw broken
            }
            guard at <= end else { throw broken }
            if let l = last, l.number == 14 {
                throw ParmlError.format("the \(what) has an auth field that is not its last before crc32")
            }
            last = (start, number, payload)
        }
        guard let l = last, l.number == 14 else { return nil }
        let p = l.payload
        let layout: [(Int, UInt8)] = [(0, 0x0A), (1, UInt8(keyIDSize)), (2 + keyIDSize, 0x12), (3 + keyIDSize, UInt8(macSize))]
        guard p.count == payloadSize, layout.allSatisfy({ bytes[p.lowerBound + $0.0] == $0.1 }) else {
            throw ParmlError.authFailed(
                "the \(what)'s auth field is \(p.count) bytes, not the \(payloadSize) of a key id and an HMAC-SHA-256 tag: it was cut or altered")
        }
        let id = (p.lowerBound + 2)..<(p.lowerBound + 2 + keyIDSize)
        return (l.start, id, (id.upperBound + 2)..<p.upperBound)
    }

    /// Checks a sealed file's authentication against `key` (nil: the caller
    /// has none), before anything else reads it: the three failures are
    /// distinct errors (.authMissing, .authKey, .authFailed).
    static func verify(_ bytes: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?, what: String) throws {
        let found = try locate(bytes, what: what)
        guard let key else {
            if found != nil {
                throw ParmlError.authKey(
                    "the \(what) is authenticated (HMAC-SHA-256): load it with its key (the *_authenticated calls, or key= in Python)")
            }
            return
        }
        try check(key)
        guard let found else {
            throw ParmlError.authMissing("the \(what) carries no authentication tag: it was saved without a key, or its tag was removed")
        }
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let id = try keyID(key)
        guard equal(id, base + found.keyID.lowerBound) else {
            throw ParmlError.authKey("the \(what) was authenticated with another key")
        }
        let tag = try mac(key, UnsafeRawBufferPointer(rebasing: bytes[0..<found.bodyEnd]))
        guard equal(tag, base + found.mac.lowerBound) else {
            throw ParmlError.authFailed("the \(what)'s authentication tag does not verify: its bytes were altered after it was saved")
        }
    }

    /// Constant-time comparison (pml_equal_constant_time): the time taken
    /// says nothing of where a forged tag first differs.
    private static func equal(_ a: [UInt8], _ b: UnsafePointer<UInt8>) -> Bool {
        a.withUnsafeBufferPointer { pml_equal_constant_time($0.baseAddress, b, $0.count) == 1 }
    }

    /// A protobuf varint at `at` (advanced past it), or nil if it runs past `end` or 10 bytes.
    private static func varint(_ bytes: UnsafeRawBufferPointer, _ at: inout Int, _ end: Int) -> UInt64? {
        var v: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard at < end else { return nil }
            let b = bytes[at]
            at += 1
            v |= UInt64(b & 0x7F) << UInt64(shift)
            if b & 0x80 == 0 { return v }
        }
        return nil
    }
}
