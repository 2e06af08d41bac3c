import ParmlModel
import ParmlTensor

extension Trainer {
    /// The arithmetic this trainer's products run in: the strategy's
    /// precision where this host can, else float32 (docs/precision.md).
    public var precision: Precision { BF16.resolve(strategy.precision) }

    /// The plan's line on precision, with the reason when bf16 was asked
    /// for and float32 runs instead.
    var precisionDescription: String {
        switch (strategy.precision, precision) {
        case (.bf16, .bf16):
            return "precision: bf16 products (Linear layers, attention projections and oneDNN convolutions, forward, dW and dx: bf16 operands, "
                + "float32 accumulation; oneDNN "
                + "\(OneDNN.version), \(BF16.implementation ?? "?")); projection weights rounded to bf16 once per step, "
                + (ranks.allSatisfy(\.keepsBF16Copies) ? "by the optimizer's update as it writes them" : "by each layer at the step's first use")
                + "; master "
                + "weights, optimizer state, losses, softmax, normalisation and reductions in float32"
        case (.bf16, _):
            return "precision: float32 (bf16 was asked for, but \(BF16.unavailableReason ?? "it cannot run here"); "
                + "float32 fallback)"
        default:
            return "precision: float32 (\(BLAS.largeProductsDescription))"
        }
    }
}
