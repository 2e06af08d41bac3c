import ParmlModel
import ParmlSerialization
import ParmlTensor
import Testing
import _ParmlTestSupport

/// 12 → 16 → ReLU → residual(LayerNorm, residual(16 → 16, GELU), Dropout) →
/// Tanh → 16 → 4 → Sigmoid: every layer kind, nested residual blocks.
func everyKindModel(seed: UInt64 = 5) throws -> Model {
    let m = Model()
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 12, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.beginResidual()
    try m.add(try LayerNorm(features: 16, eps: 1e-3))
    try m.beginResidual()
    try m.add(try Linear(inFeatures: 16, outFeatures: 16, bias: false))
    try m.add(Activation(.gelu))
    try m.endResidual()
    try m.add(try Dropout(probability: 0.2))
    try m.endResidual()
    try m.add(Activation(.tanh))
    try m.add(try Linear(inFeatures: 16, outFeatures: 4))
    try m.add(Activation(.sigmoid))
    try m.initialize(seed: seed)
    return m
}

func parameterBits(_ m: Model) -> [UInt32] {
    guard let p = m.parameters else { return [] }
    return (0..<p.count).map { p.data[$0].bitPattern }
}

func encodedArray(_ e: EncodedBytes) -> [UInt8] { Array(e.bytes) }

/// Decodes `bytes` as a model; the error it throws, if any.
func modelError(_ bytes: [UInt8]) -> ParmlError? {
    parmlError { _ = try bytes.withUnsafeBytes { try ModelFile.decode($0) } }
}
