import ParmlTensor

/// A whole dataset in memory: N samples of inputs and their targets, row i of
/// one belonging to row i of the other. Batches are copied out of it by a
/// `Batcher`, so training never reads the dataset tensors in place.
///
/// The dataset keeps the tensors it is given (no copy: MNIST's inputs alone
/// are 188 MB); they must not be resized afterwards.
public final class Dataset {
    /// Shape (N, sample dims...).
    public let inputs: Tensor
    /// Shape (N,) or (N, T) of class indices (int32, or float32 integers
    /// below 2^24), or (N, k...) of float32 regression targets.
    public let targets: Tensor
    /// N, the number of samples.
    public let count: Int
    /// The shape of one input sample: `inputs.shape` without its first dimension.
    public let sampleShape: Shape
    /// For (N,) targets that are all non-negative integers: the largest plus
    /// one. Nil for anything else (regression targets).
    public let numClasses: Int?
    /// The names of classes 0, 1, ... when the labels were text (a CSV
    /// label column of names); nil otherwise. Set once, before the dataset
    /// is shared.
    public internal(set) var classNames: [String]?
    /// How training batches transform its images (`Augmentation`); nil: not at all.
    public private(set) var augmentation: Augmentation?
    /// One loss weight per sample (`withSampleWeights`); nil: all 1.
    public internal(set) var sampleWeights: [Float]?

    /// Checks that inputs have a sample dimension, that both tensors have the
    /// same leading dimension N, and that N ≥ 1.
    public init(inputs: Tensor, targets: Tensor) throws {
        guard inputs.shape.rank >= 2 else {
            throw ParmlError.shape(
                "dataset inputs need shape (N, sample dims...), got \(inputs.shape); reshape scalar features to (N, 1)")
        }
        let n = inputs.shape[0]
        guard targets.shape[0] == n else {
            throw ParmlError.shape(
                "dataset inputs have \(n) samples (shape \(inputs.shape)) but targets have \(targets.shape[0]) (shape \(targets.shape))"
            )
        }
        guard n >= 1 else {
            throw ParmlError.invalidArgument("a dataset needs at least 1 sample, got \(n)")
        }
        self.inputs = inputs
        self.targets = targets
        count = n
        var sample = Shape(inputs.shape[1])
        for i in 2..<max(inputs.shape.rank, 2) { sample.append(inputs.shape[i]) }
        sampleShape = sample
        guard inputs.dtype == .float32 else {
            throw ParmlError.internal("dataset inputs are \(inputs.dtype.name); the C layer converts them to float32")
        }
        guard targets.dtype != .int64 else {
            throw ParmlError.internal("int64 dataset targets reach the engine; the C layer narrows them to int32")
        }
        numClasses = targets.shape.rank == 1 || targets.dtype == .int32 ? Dataset.classCount(targets) : nil
    }

    /// Sets how `Trainer.fit` transforms this dataset's images when it forms
    /// training batches (evaluation never does); nil or the identity: none.
    /// Throws when the samples are not images (C, H, W) or (H, W), or the
    /// padding is not below their height and width.
    public func setAugmentation(_ a: Augmentation?) throws {
        guard let a, !a.isIdentity else {
            augmentation = nil
            return
        }
        _ = try a.planeSize(of: sampleShape)
        augmentation = a
    }

    /// Largest label plus one, or nil when some value is not a non-negative
    /// integer. Float labels above 2^24 are rejected: past that Float no
    /// longer holds every integer, so such values cannot be class indices;
    /// int32 labels have no such limit.
    static func classCount(_ t: Tensor) -> Int? {
        if t.dtype == .int32 {
            var top: Int32 = 0
            for i in 0..<t.count {
                let v = t.int32s[i]
                guard v >= 0 else { return nil }
                top = max(top, v)
            }
            return Int(top) + 1
        }
        var maxLabel: Float = 0
        for i in 0..<t.count {
            let v = t.data[i]
            guard isClassIndex(v) else { return nil }
            if v > maxLabel { maxLabel = v }
        }
        return Int(maxLabel) + 1
    }

    @inline(__always)
    static func isClassIndex(_ v: Float) -> Bool { v >= 0 && v <= 16_777_216 && v.rounded(.towardZero) == v }

    /// Loads an image/label pair of IDX files (MNIST, Fashion-MNIST, EMNIST),
    /// plain or gzipped. Unsigned-byte images are scaled to [0, 1] by dividing
    /// by 255, other element types are kept as they are; inputs take the
    /// image file's shape (N, rows, cols). Labels must be a 1-D file of
    /// non-negative integers and become class indices.
    public static func loadIDX(images: String, labels: String) throws -> Dataset {
        try images.withCString { i in
            try labels.withCString { l in try loadIDX(imagesPath: i, labelsPath: l) }
        }
    }

    /// The same with paths as C bytes, passed to the system unchanged (Linux
    /// paths need not be valid UTF-8).
    public static func loadIDX(imagesPath: UnsafePointer<CChar>, labelsPath: UnsafePointer<CChar>) throws -> Dataset {
        let images = String(cString: imagesPath), labels = String(cString: labelsPath)
        let image = try IDX.read(cPath: imagesPath, displayName: images)
        guard image.dims.count >= 2 else {
            throw ParmlError.format(
                "\(images): an image file needs at least 2 dimensions (N, sample dims...), got dims \(image.dims)")
        }
        let label = try IDX.read(cPath: labelsPath, displayName: labels)
        guard label.dims.count == 1 else {
            throw ParmlError.format("\(labels): a label file has 1 dimension (N), got dims \(label.dims)")
        }
        guard image.dims[0] == label.dims[0] else {
            throw ParmlError.format(
                "\(images) holds \(image.dims[0]) images but \(labels) holds \(label.dims[0]) labels")
        }

        let inputs = try Tensor(shape: try Shape(image.dims))
        image.values.withUnsafeBufferPointer { src in
            if image.type == .ubyte {
                // Division, not multiplication by 1/255: 255 maps to exactly 1.
                for i in 0..<src.count { inputs.data[i] = src[i] / 255 }
            } else {
                inputs.data.update(from: src.baseAddress!, count: src.count)
            }
        }
        // Labels become int32 class indices (IDX values are read as floats:
        // exact below 2^24, which covers every IDX integer type but int32).
        let targets = try Tensor(shape: Shape(label.dims[0]), dtype: .int32)
        for (i, v) in label.values.enumerated() {
            guard Dataset.isClassIndex(v) else {
                throw ParmlError.format("\(labels): label \(i) is \(v), not a class index (an integer in 0...2^24)")
            }
            targets.int32s[i] = Int32(v)
        }
        return try Dataset(inputs: inputs, targets: targets)
    }
}
