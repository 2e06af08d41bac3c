import CZlib
import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

/// A fresh directory under the system temp dir, removed when released.
final class TempDir {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/parml-data-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// An IDX header: magic, type code, rank, dims as big-endian UInt32.
func idxHeader(type: UInt8, dims: [UInt32], magic: (UInt8, UInt8) = (0, 0)) -> [UInt8] {
    var h: [UInt8] = [magic.0, magic.1, type, UInt8(dims.count)]
    for d in dims { withUnsafeBytes(of: d.bigEndian) { h.append(contentsOf: $0) } }
    return h
}

/// Big-endian bytes of a fixed-width integer.
func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

/// Writes `bytes` as they are, or as a gzip stream.
func writeBytes(_ bytes: [UInt8], to path: String, gzip: Bool) throws {
    if !gzip {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return
    }
    guard let f = gzopen(path, "wb") else { throw ParmlError.io("gzopen \(path)") }
    let wrote = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
    let rc = gzclose(f)
    guard wrote == Int32(bytes.count), rc == Z_OK else { throw ParmlError.io("gzwrite \(path)") }
}

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}



