import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

/// The .npy header parser, the conversion rules and the CSV record splitter,
/// read at the tensor level (the C and Python tests compare losses).
@Suite struct NumPyCSVTests {
    /// A .npy v1 image: magic, version, header length, the dict, the data.
    func npy(_ dict: String, _ data: [UInt8]) -> [UInt8] {
        var header = Array(dict.utf8) + [0x0A]
        while (10 + header.count) % 16 != 0 { header.insert(0x20, at: header.count - 1) }
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + header + data
    }

    func header(_ bytes: [UInt8]) throws -> NPYHeader {
        try bytes.withUnsafeBytes { try NPY.header(of: $0, name: "t.npy") }
    }

    @Test func headerSyntaxVariants() throws {
        let data = [UInt8](repeating: 0, count: 24)
        let h = try header(npy("{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}", data))
        #expect(h.element == .float32 && h.dims == [2, 3] && h.count == 6 && h.dataOffset % 16 == 0)
        let one = try header(npy("{\"shape\": (6,), \"descr\": \"|u1\", \"fortran_order\": False, }", Array(data[0..<6])))
        #expect(one.element == .uint8 && one.dims == [6])
        #expect(throws: ParmlError.self) { try header(npy("{'descr': '<f4', 'shape': (6,)}", data)) }  // no fortran_order
        #expect(throws: ParmlError.self) { try header(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", data)) }
        #expect(throws: ParmlError.self) { try header(npy("['descr', '<f4']", data)) }
    }

    @Test func conversionsAtTheTensorLevel() throws {
        let u8: [UInt8] = [0, 1, 128, 255]
        let h = try header(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", u8))
        let owner = NSObject()
        let x = try u8.withUnsafeBytes { try NPY.inputs(h, data: $0.baseAddress!, owner: owner, name: "t") }
        #expect(x.toArray() == [0, 1 / 255, 128 / 255, 1])
        let y = try u8.withUnsafeBytes { try NPY.targets(h, data: $0.baseAddress!, owner: owner, name: "t") }
        #expect(y.dtype == .int32 && (0..<4).map { y.int32s[$0] } == [0, 1, 128, 255])

        let halves: [Float16] = [0.5, -2, 65504, 0.099975586]
        let hh = NPYHeader(element: .float16, dims: [4, 1], dataOffset: 0, count: 4)
        let f = try halves.withUnsafeBytes { try NPY.inputs(hh, data: $0.baseAddress!, owner: owner, name: "t") }
        expectEqualElements(f.toArray(), halves.map(Float.init))

        // float32 at an aligned address is a view of the caller's bytes, not a copy.
        let floats: [Float] = [1, 2, 3, 4]
        let hf = NPYHeader(element: .float32, dims: [2, 2], dataOffset: 0, count: 4)
        try floats.withUnsafeBytes { raw in
            let v = try NPY.inputs(hf, data: raw.baseAddress!, owner: owner, name: "t")
            #expect(UnsafeRawPointer(v.data) == raw.baseAddress!)
        }
    }

    @Test func csvRecordsQuotesAndLines() throws {
        let text = "a,\"b, with comma\"\r\n\n\"multi\nline\",2\n  3 ,\"say \"\"hi\"\"\"\n"
        var seen: [(Int, [String])] = []
        try Array(text.utf8).withUnsafeBytes { bytes in
            try CSV.forEachRecord(bytes, delimiter: UInt8(ascii: ","), name: "t") { r in
                seen.append((r.line, r.fields.map { CSV.text(bytes, $0) }))
            }
        }
        #expect(seen.map(\.0) == [1, 3, 5])
        #expect(seen.map(\.1) == [["a", "b, with comma"], ["multi\nline", "2"], ["3", "say \"hi\""]])
    }

    @Test func csvValuesLandInOrder() throws {
        let dir = try TempDir()
        let path = dir.file("t.csv")
        try Data("y,a,b\n1,0.5,-2\n0,1e3,7\n".utf8).write(to: URL(fileURLWithPath: path))
        var o = CSVOptions()
        o.label = .name("y")
        o.features = [.name("b"), .index(1)]
        let d = try path.withCString { try Dataset.loadCSV(cPath: $0, options: o) }
        #expect(d.inputs.shape == Shape(2, 2) && d.inputs.toArray() == [-2, 0.5, 7, 1000])
        #expect(d.targets.dtype == .int32 && d.targets.int32s[0] == 1 && d.targets.int32s[1] == 0 && d.numClasses == 2)
    }
}
