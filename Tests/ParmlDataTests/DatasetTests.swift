import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

@Suite struct DatasetTests {
    @Test func shapesAndClasses() throws {
        let inputs = try Tensor(shape: Shape(4, 2, 3))
        let targets = try Tensor([0, 2, 1, 2], shape: Shape(4))
        let d = try Dataset(inputs: inputs, targets: targets)
        #expect(d.count == 4)
        #expect(d.sampleShape == Shape(2, 3))
        #expect(d.numClasses == 3)
        #expect(d.inputs === inputs)
        #expect(d.targets === targets)
    }

    @Test func numClassesOnlyForIntegralNonNegativeVectors() throws {
        let x = try Tensor(shape: Shape(3, 1))
        #expect(try Dataset(inputs: x, targets: Tensor([0, 1.5, 2], shape: Shape(3))).numClasses == nil)
        #expect(try Dataset(inputs: x, targets: Tensor([0, -1, 2], shape: Shape(3))).numClasses == nil)
        #expect(try Dataset(inputs: x, targets: Tensor([0, .nan, 2], shape: Shape(3))).numClasses == nil)
        #expect(try Dataset(inputs: x, targets: Tensor([0, 1e30, 2], shape: Shape(3))).numClasses == nil)
        #expect(try Dataset(inputs: x, targets: Tensor(shape: Shape(3, 2))).numClasses == nil)
        #expect(try Dataset(inputs: x, targets: Tensor([0, 0, 0], shape: Shape(3))).numClasses == 1)
        #expect(try Dataset(inputs: x, targets: Tensor([9, 0, 0], shape: Shape(3))).numClasses == 10)
    }

    @Test func leadingDimensionsMustMatch() throws {
        let e = parmlError {
            _ = try Dataset(inputs: Tensor(shape: Shape(5, 3)), targets: Tensor(shape: Shape(4)))
        }
        expectError(e, "shape", mentions: ["5", "4"])
    }

    @Test func needsAtLeastOneSample() throws {
        let e = parmlError {
            _ = try Dataset(inputs: Tensor(shape: Shape(0, 3)), targets: Tensor(shape: Shape(0)))
        }
        expectError(e, "invalidArgument", mentions: ["0"])
    }

    @Test func inputsNeedASampleDimension() throws {
        let e = parmlError {
            _ = try Dataset(inputs: Tensor(shape: Shape(5)), targets: Tensor(shape: Shape(5)))
        }
        expectError(e, "shape", mentions: ["(5)"])
    }

    @Test(arguments: [false, true])
    func loadIDXScalesImagesAndReadsLabels(gzip: Bool) throws {
        let dir = try TempDir()
        let images = dir.file("images"), labels = dir.file("labels")
        let pixels: [UInt8] = [0, 255, 51, 102, 1, 2, 3, 4, 254, 128, 127, 255]
        try IDX.write(path: images, dims: [3, 2, 2], ubyte: pixels, gzip: gzip)
        try IDX.write(path: labels, dims: [3], ubyte: [1, 0, 4], gzip: gzip)

        let d = try Dataset.loadIDX(images: images, labels: labels)
        #expect(d.count == 3)
        #expect(d.inputs.shape == Shape(3, 2, 2))
        #expect(d.sampleShape == Shape(2, 2))
        #expect(d.targets.shape == Shape(3))
        #expect(d.targets.dtype == .int32)
        #expect(Array(UnsafeBufferPointer(start: d.targets.int32s, count: 3)) == [1, 0, 4])
        #expect(d.numClasses == 5)
        expectEqualElements(d.inputs.toArray(), pixels.map { Float($0) / 255 })
        #expect(d.inputs[1] == 1.0)
        #expect(d.inputs[0] == 0.0)
        #expect(d.inputs[2] == Float(0.2))
    }

    @Test func loadIDXKeepsNonByteImages() throws {
        let dir = try TempDir()
        let images = dir.file("images"), labels = dir.file("labels")
        let values: [Float] = [-1.5, 300, 0.25, 2]
        try writeBytes(
            idxHeader(type: 0x0D, dims: [2, 2]) + values.flatMap { be($0.bitPattern) }, to: images, gzip: false)
        try IDX.write(path: labels, dims: [2], ubyte: [0, 1], gzip: false)
        let d = try Dataset.loadIDX(images: images, labels: labels)
        expectEqualElements(d.inputs.toArray(), values)
        #expect(d.inputs.shape == Shape(2, 2))
    }

    @Test func loadIDXCountsMustMatch() throws {
        let dir = try TempDir()
        let images = dir.file("images"), labels = dir.file("labels")
        try IDX.write(path: images, dims: [3, 2, 2], ubyte: [UInt8](repeating: 1, count: 12), gzip: false)
        try IDX.write(path: labels, dims: [4], ubyte: [0, 1, 2, 3], gzip: false)
        expectError(
            parmlError { _ = try Dataset.loadIDX(images: images, labels: labels) }, "format",
            mentions: ["3 images", "4 labels", images, labels])
    }

    @Test func loadIDXRejectsBadLabelFiles() throws {
        let dir = try TempDir()
        let images = dir.file("images"), labels = dir.file("labels")
        try IDX.write(path: images, dims: [2, 2], ubyte: [1, 2, 3, 4], gzip: false)
        try IDX.write(path: labels, dims: [2, 1], ubyte: [0, 1], gzip: false)
        expectError(parmlError { _ = try Dataset.loadIDX(images: images, labels: labels) }, "format", mentions: [labels])

        let negative = dir.file("negative")
        try writeBytes(idxHeader(type: 0x09, dims: [2]) + [0, 0xFF], to: negative, gzip: false)
        expectError(
            parmlError { _ = try Dataset.loadIDX(images: images, labels: negative) }, "format", mentions: ["-1.0"])

        let flat = dir.file("flat")
        try IDX.write(path: flat, dims: [4], ubyte: [1, 2, 3, 4], gzip: false)
        expectError(parmlError { _ = try Dataset.loadIDX(images: flat, labels: labels) }, "format", mentions: [flat])

        expectError(
            parmlError { _ = try Dataset.loadIDX(images: dir.file("nope"), labels: labels) }, "io",
            mentions: [dir.file("nope")])
    }
}
