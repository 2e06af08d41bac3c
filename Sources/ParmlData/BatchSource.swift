import ParmlTensor

/// What a `Batcher` cuts into batches: `count` samples per epoch, each an
/// input and its target. A `Dataset` holds every sample in memory; a
/// `TokenDataset` cuts windows out of one array of token ids when a batch
/// asks for them, so its samples never exist all at once.
public protocol BatchSource: AnyObject {
    /// Samples per epoch.
    var count: Int { get }
    /// The shape of all of an epoch's inputs together: (count, sample dims...).
    var inputShape: Shape { get }
    /// For class-index targets: the largest plus one. Nil for regression targets.
    var numClasses: Int? { get }

    /// Resizes `inputs` and `targets` to `samples.count` rows and copies
    /// sample `samples[r]` of epoch `epoch` into row r. Inputs are float32
    /// (the engine's input type); reuses the tensors' memory once it is big
    /// enough, so steady-state calls allocate nothing.
    func copy(samples: UnsafeBufferPointer<Int>, epoch: Int, inputs: Tensor, targets: Tensor) throws

    /// What a trainer checks against its model and loss before training
    /// on this source: an input shape and the targets that go with it.
    /// Every target of the source must pass wherever these pass.
    func fitProbe() throws -> (inputShape: Shape, targets: Tensor)

    /// How training batches transform the inputs after `copy`; nil: not at all.
    var augmentation: Augmentation? { get }

    /// True when `copy` takes positions in the source's own epoch order
    /// (a stream shuffles as it reads): a batcher then asks for positions
    /// 0, 1, 2, ... and never shuffles or weights them itself.
    var ordersItself: Bool { get }

    /// One loss weight per sample (SampleWeights), indexed like `copy`'s
    /// samples; nil: every sample weighs 1.
    var sampleWeights: [Float]? { get }
}

extension BatchSource {
    public var augmentation: Augmentation? { nil }
    public var sampleWeights: [Float]? { nil }
    public var ordersItself: Bool { false }
}
