import ParmlTensor

/// Every registered layer kind, in the order the kinds query lists them.
/// A new kind is its own file plus one line here (docs/adding-a-layer.md).
public enum LayerKinds {
    public static let all: [LayerKind] = [
        Linear.descriptor,
        Activation.relu,
        Activation.gelu,
        Activation.tanh,
        Activation.sigmoid,
        LayerNorm.descriptor,
        Dropout.descriptor,
        Flatten.descriptor,
        LeakyReLU.descriptor,
        Embedding.descriptor,
        PositionEmbedding.descriptor,
        CausalSelfAttention.descriptor,
        TiedClassifier.descriptor,
        Conv2d.descriptor,
        MaxPool2d.descriptor,
        AvgPool2d.descriptor,
        GlobalAvgPool.descriptor,
        BatchNorm.descriptor,
    ]

    public static func named(_ name: String) -> LayerKind? { all.first { $0.name == name } }

    /// The kind called `name`, or an error listing the kinds there are.
    public static func kind(named name: String) throws -> LayerKind {
        if let k = named(name) { return k }
        let names = all.map(\.name).joined(separator: ", ")
        throw ParmlError.invalidArgument("no layer kind is named '\(name)' (the kinds: \(names), and residual blocks)")
    }
}
