import ParmlTensor

/// The oneDNN plans of one conv2d layer, one per input size and thread
/// count: made the first time a shape comes, then kept (deterministic mode's
/// short last chunk and an evaluation batch are shapes of their own), so a
/// warmed-up step makes none. A shape oneDNN refuses is remembered as nil
/// and runs im2col.
final class ConvolutionPlans {
    private var plans: [(key: ConvolutionPlan.Key, plan: ConvolutionPlan?)] = []
    /// Enough for training, its last chunk and evaluation; the oldest goes first.
    private static let capacity = 4

    func plan(for key: ConvolutionPlan.Key, make: (ConvolutionPlan.Key) throws -> ConvolutionPlan) -> ConvolutionPlan? {
        if let hit = plans.first(where: { $0.key == key }) { return hit.plan }
        let made = try? make(key)
        if plans.count == Self.capacity { plans.removeFirst() }
        plans.append((key, made))
        return made
    }
}
