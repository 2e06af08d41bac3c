import ParmlTensor
import Testing

@testable import ParmlModel

/// Passes its gradient through; no parameters (as tp's f operator, a
/// flatten or an activation before a model's first projection).
private final class PassThrough: Layer {
    var kind: String { "pass_through" }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        needInputGradient ? dy : nil
    }
    func replicate() throws -> Layer { PassThrough() }
}

/// Trains one parameter and records whether it was asked for its input gradient.
private final class Recorder: Layer {
    var kind: String { "recorder" }
    var asked: [Bool] = []
    var parameterSpecs: [ParameterSpec] { [ParameterSpec(name: "w", shape: Shape(1), initializer: .constant(0), decays: false)] }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        asked.append(needInputGradient)
        return needInputGradient ? dy : nil
    }
    func replicate() throws -> Layer { Recorder() }
}

@Suite struct SequentialBackwardTests {
    /// A layer is asked for its input gradient only where something before
    /// it reads one: the caller, or an earlier layer that trains parameters.
    @Test func onlyLayersWithAReaderComputeTheirInputGradient() throws {
        let dy = try Tensor(shape: Shape(2, 3))
        let first = Recorder(), second = Recorder()
        let s = Sequential([PassThrough(), first, PassThrough(), second])
        #expect(try s.backward(dy, PassContext(training: true), needInputGradient: false, accumulate: false) == nil)
        #expect(first.asked == [false] && second.asked == [true])
        #expect(try s.backward(dy, PassContext(training: true), needInputGradient: true, accumulate: false) != nil)
        #expect(first.asked == [false, true] && second.asked == [true, true])
        // Nothing before it trains: the first projection behind pass-through layers computes none.
        let only = Recorder()
        #expect(try Sequential([PassThrough(), PassThrough(), only]).backward(dy, PassContext(training: true), needInputGradient: false, accumulate: false) == nil)
        #expect(only.asked == [false])
        // A nested sequence that trains counts as training.
        let inner = Recorder(), after = Recorder()
        _ = try Sequential([Sequential([PassThrough(), inner]), after]).backward(dy, PassContext(training: true), needInputGradient: false, accumulate: false)
        #expect(after.asked == [true] && inner.asked == [false])
        #expect(!Sequential([PassThrough()]).trainsParameters && Sequential([PassThrough(), Recorder()]).trainsParameters)
    }
}
