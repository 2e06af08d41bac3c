#if canImport(Glibc)
import Glibc
#endif
import CZlib
import ParmlTensor

/// The element types an IDX file can hold, keyed by the type byte of its
/// header (the third magic byte).
public enum IDXElementType: UInt8, Sendable, CaseIterable {
    case ubyte = 0x08
    case sbyte = 0x09
    case int16 = 0x0B
    case int32 = 0x0C
    case float32 = 0x0D
    case float64 = 0x0E

    /// Bytes per element in the payload.
    public var size: Int {
        switch self {
        case .ubyte, .sbyte: return 1
        case .int16: return 2
        case .int32, .float32: return 4
        case .float64: return 8
        }
    }
}

/// The contents of one IDX file. Values are converted to Float because the
/// engine computes in float32: int32 values beyond 2^24 and float64 values
/// are rounded to the nearest float.
public struct IDXArray: Sendable, Equatable {
    public let dims: [Int]
    public let type: IDXElementType
    /// All elements in row-major order, `dims` multiplied together of them.
    public let values: [Float]

    public init(dims: [Int], type: IDXElementType, values: [Float]) {
        self.dims = dims
        self.type = type
        self.values = values
    }
}

/// Reader and writer of the IDX format (LeCun's MNIST files): two zero bytes,
/// a type byte, a rank byte, the dimensions as big-endian UInt32, then the
/// elements big-endian in row-major order.
public enum IDX {
    /// Largest element count a file may declare. A corrupt header can claim
    /// anything; the values become Floats, so 2^31 of them is already 8 GiB.
    public static let maxElements = 1 << 31

    /// Bytes decompressed per read: the whole file is never held as bytes.
    static let chunkBytes = 1 << 16

    /// Reads a plain or gzip-compressed IDX file (zlib reads both the same
    /// way). The header, dimensions and exact payload length are checked
    /// before anything is trusted: a short or over-long payload, a bad magic
    /// number or an impossible shape throws `ParmlError.format`; a file that
    /// cannot be opened or read throws `ParmlError.io`.
    public static func read(path: String) throws -> IDXArray {
        try path.withCString { try read(cPath: $0, displayName: path) }
    }

    /// The same for a path given as C bytes: Linux paths need not be UTF-8,
    /// so the bytes go to the system unchanged; `displayName` is for messages.
    public static func read(cPath: UnsafePointer<CChar>, displayName path: String) throws -> IDXArray {
        let reader = try GzReader(readingFrom: cPath, displayName: path)
        defer { reader.close() }

        var header: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        let headerBytes = try withUnsafeMutableBytes(of: &header) { try reader.read(into: $0.baseAddress!, count: 4) }
        guard headerBytes == 4 else {
            throw ParmlError.format(
                "\(path): file ends after \(headerBytes) bytes, inside the 4-byte IDX header\(reader.truncationNote)")
        }
        guard header.0 == 0, header.1 == 0 else {
            throw ParmlError.format(
                "\(path): not an IDX file (magic bytes \(hex(header.0)) \(hex(header.1)), expected 0x00 0x00)")
        }
        guard let type = IDXElementType(rawValue: header.2) else {
            throw ParmlError.format(
                "\(path): unknown IDX element type \(hex(header.2)) (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)")
        }
        let rank = Int(header.3)
        guard rank >= 1, rank <= Shape.maxRank else {
            throw ParmlError.format("\(path): IDX rank \(rank) is not in 1...\(Shape.maxRank)")
        }

        var dimBytes = [UInt8](repeating: 0, count: 4 * rank)
        let gotDims = try dimBytes.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress!, count: 4 * rank) }
        guard gotDims == 4 * rank else {
            throw ParmlError.format(
                "\(path): file ends inside the dimensions (expected \(4 * rank) bytes for \(rank) dimensions, got \(gotDims))\(reader.truncationNote)"
            )
        }
        var dims: [Int] = []
        dims.reserveCapacity(rank)
        var elements = 1
        for i in 0..<rank {
            let d =
                Int(dimBytes[4 * i]) << 24 | Int(dimBytes[4 * i + 1]) << 16 | Int(dimBytes[4 * i + 2]) << 8
                | Int(dimBytes[4 * i + 3])
            guard d > 0 else { throw ParmlError.format("\(path): dimension \(i) is 0") }
            dims.append(d)
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow, p <= maxElements else {
                throw ParmlError.format(
                    "\(path): dimensions \(dims.map(String.init).joined(separator: "x"))... exceed the limit of \(maxElements) elements")
            }
            elements = p
        }

        let values = try readPayload(reader, path: path, type: type, elements: elements)
        return IDXArray(dims: dims, type: type, values: values)
    }

    /// Decodes `elements` big-endian values chunk by chunk, then insists that
    /// the file ends exactly there. The output grows as data arrives, so a
    /// header that lies about its size fails on the short payload instead of
    /// reserving memory for the claim.
    private static func readPayload(
        _ reader: GzReader, path: String, type: IDXElementType, elements: Int
    ) throws -> [Float] {
        let size = type.size
        let expectedBytes = elements * size
        var values: [Float] = []
        values.reserveCapacity(min(elements, 1 << 22))

        let chunk = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 16)
        defer { chunk.deallocate() }
        let converted = UnsafeMutablePointer<Float>.allocate(capacity: chunkBytes)
        defer { converted.deallocate() }

        var consumed = 0  // payload bytes read so far
        while consumed < expectedBytes {
            // Whole chunks are multiples of every element size, so an element
            // never straddles two reads unless the file ends inside it.
            let want = min(chunkBytes, expectedBytes - consumed)
            let got = try reader.read(into: chunk, count: want)
            consumed += got
            let n = got / size
            convert(chunk, count: n, type: type, into: converted)
            values.append(contentsOf: UnsafeBufferPointer(start: converted, count: n))
            if got < want { break }
        }
        if consumed < expectedBytes {
            throw ParmlError.format(
                "\(path): IDX payload truncated: expected \(expectedBytes) bytes (\(elements) elements × \(size) bytes), got \(consumed)\(reader.truncationNote)"
            )
        }
        // Anything after the payload means the header and data disagree.
        var extra = 0
        while true {
            let got = try reader.read(into: chunk, count: chunkBytes)
            if got == 0 { break }
            extra += got
        }
        if extra > 0 {
            throw ParmlError.format(
                "\(path): \(extra) bytes of trailing data after the IDX payload: expected \(expectedBytes) payload bytes, got \(expectedBytes + extra)"
            )
        }
        return values
    }

    /// Big-endian elements of `type` at `src` to floats at `dst`.
    private static func convert(
        _ src: UnsafeMutableRawPointer, count n: Int, type: IDXElementType, into dst: UnsafeMutablePointer<Float>
    ) {
        switch type {
        case .ubyte:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { dst[i] = Float(p[i]) }
        case .sbyte:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { dst[i] = Float(Int8(bitPattern: p[i])) }
        case .int16:
            for i in 0..<n {
                dst[i] = Float(Int16(bigEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
            }
        case .int32:
            for i in 0..<n {
                dst[i] = Float(Int32(bigEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            }
        case .float32:
            for i in 0..<n {
                dst[i] = Float(bitPattern: UInt32(bigEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        case .float64:
            for i in 0..<n {
                dst[i] = Float(Double(bitPattern: UInt64(bigEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            }
        }
    }

    /// Writes an unsigned-byte IDX file, gzip-compressed or plain. Used to make
    /// small datasets for tests and examples; the shape is validated the same
    /// way `read` validates it, so whatever this writes, `read` accepts.
    public static func write(path: String, dims: [Int], ubyte values: [UInt8], gzip: Bool) throws {
        guard dims.count >= 1, dims.count <= Shape.maxRank else {
            throw ParmlError.invalidArgument("IDX files have 1 to \(Shape.maxRank) dimensions, got \(dims.count)")
        }
        var elements = 1
        for d in dims {
            guard d > 0, d <= Int(UInt32.max) else {
                throw ParmlError.invalidArgument("IDX dimension \(d) is not in 1...\(UInt32.max) (dims \(dims))")
            }
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow, p <= maxElements else {
                throw ParmlError.invalidArgument("IDX dims \(dims) exceed the limit of \(maxElements) elements")
            }
            elements = p
        }
        guard values.count == elements else {
            throw ParmlError.invalidArgument("\(values.count) values do not fill IDX dims \(dims) (\(elements) elements)")
        }

        var header: [UInt8] = [0, 0, IDXElementType.ubyte.rawValue, UInt8(dims.count)]
        for d in dims {
            header.append(UInt8(truncatingIfNeeded: d >> 24))
            header.append(UInt8(truncatingIfNeeded: d >> 16))
            header.append(UInt8(truncatingIfNeeded: d >> 8))
            header.append(UInt8(truncatingIfNeeded: d))
        }

        // "T" asks zlib for a transparent (uncompressed) stream: one write path.
        guard let file = gzopen(path, gzip ? "wb6" : "wbT") else {
            throw ParmlError.io("\(path): cannot open for writing: \(String(cString: strerror(errno)))")
        }
        do {
            try header.withUnsafeBytes { try gzWriteAll(file, $0, path: path) }
            try values.withUnsafeBytes { try gzWriteAll(file, $0, path: path) }
        } catch {
            gzclose(file)
            throw error
        }
        let rc = gzclose(file)
        guard rc == Z_OK else {
            throw ParmlError.io("\(path): writing failed on close (zlib status \(rc)): \(String(cString: strerror(errno)))")
        }
    }

    private static func gzWriteAll(_ file: gzFile, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, chunkBytes)
            let wrote = gzwrite(file, bytes.baseAddress! + offset, UInt32(n))
            guard wrote == Int32(n) else {
                var errnum: Int32 = 0
                let message = String(cString: gzerror(file, &errnum))
                throw ParmlError.io("\(path): write failed after \(offset) bytes: \(message)")
            }
            offset += n
        }
    }

    static func hex(_ b: UInt8) -> String {
        let digits = String(b, radix: 16, uppercase: true)
        return "0x" + (digits.count < 2 ? "0" + digits : digits)
    }
}

/// A zlib read handle that turns zlib's status codes into `ParmlError`s: a
/// failed system call is `.io`, a damaged compressed stream is `.format`.
final class GzReader {
    let path: String
    private var file: gzFile?
    /// Decompressed bytes handed out so far, for error messages.
    private(set) var delivered = 0

    init(readingFrom cPath: UnsafePointer<CChar>, displayName path: String) throws {
        self.path = path
        guard let f = gzopen(cPath, "rb") else {
            throw ParmlError.io("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        // A larger input buffer than zlib's 8 KiB default: fewer read calls.
        gzbuffer(f, UInt32(IDX.chunkBytes))
        file = f
    }

    deinit { close() }

    func close() {
        if let f = file { gzclose(f) }
        file = nil
    }

    /// Reads up to `count` bytes; fewer only at the end of the data.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        guard let f = file else { return 0 }
        var total = 0
        while total < count {
            let n = gzread(f, buffer + total, UInt32(min(count - total, Int(Int32.max))))
            if n < 0 {
                var errnum: Int32 = 0
                let message = zlibMessage(gzerror(f, &errnum))
                if errnum == Z_ERRNO {
                    throw ParmlError.io("\(path): read failed: \(message)")
                }
                throw ParmlError.format(
                    "\(path): corrupt gzip data after \(delivered + total) decompressed bytes: \(message)")
            }
            if n == 0 { break }
            total += Int(n)
        }
        delivered += total
        return total
    }

    /// zlib's message without the "path: " it puts in front (ours names the path already).
    private func zlibMessage(_ c: UnsafePointer<CChar>?) -> String {
        guard let c else { return "unknown zlib error" }
        let m = String(cString: c)
        let prefix = path + ": "
        return m.hasPrefix(prefix) ? String(m.dropFirst(prefix.count)) : m
    }

    /// zlib reports a gzip stream cut short as a soft error and then behaves
    /// as at end of file; this says so in a truncation message.
    var truncationNote: String {
        guard let f = file else { return "" }
        var errnum: Int32 = 0
        _ = gzerror(f, &errnum)
        return errnum == Z_BUF_ERROR ? " (the gzip stream ends early)" : ""
    }
}
