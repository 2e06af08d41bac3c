import Foundation
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

/// What each copy of a `Recorder` was asked, shared by its replicas.
private final class AskedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var asked: [String: [Bool]] = [:]
    func record(_ name: String, _ need: Bool) { lock.withLock { asked[name, default: []].append(need) } }
    func of(_ name: String) -> [Bool] { lock.withLock { asked[name] ?? [] } }
}

/// Passes its input on; trains one parameter (left at 0) and records
/// whether backward asked it for its input gradient.
private final class Recorder: Layer {
    let name: String
    let log: AskedLog
    init(_ name: String, _ log: AskedLog) { (self.name, self.log) = (name, log) }
    var kind: String { "recorder" }
    var parameterSpecs: [ParameterSpec] { [ParameterSpec(name: "w", shape: Shape(1), initializer: .constant(0), decays: false)] }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        log.record(name, needInputGradient)
        return needInputGradient ? dy : nil
    }
    func replicate() throws -> Layer { Recorder(name, log) }
}

/// DP-SGD's first pass asks the same question; its norm here is 0.
extension Recorder: PerExampleNormLayer {
    func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        log.record(name + " norms", needInputGradient)
        return needInputGradient ? dy : nil
    }
}

/// Passes its input and gradient on; no parameters (a flatten, an activation).
private final class PassThrough: Layer {
    var kind: String { "pass_through" }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        needInputGradient ? dy : nil
    }
    func replicate() throws -> Layer { PassThrough() }
}

@Suite struct InputGradientTests {
    /// Within a sequence, a layer is asked for its input gradient only where
    /// something before it reads one: the caller, or an earlier layer that
    /// trains parameters (tp's f operator before a model's first projection
    /// has none).
    @Test func aSequenceAsksOnlyLayersWithAReader() throws {
        let log = AskedLog()
        let dy = try Tensor(shape: Shape(2, 3))
        let ctx = PassContext(training: true)
        let s = Sequential([PassThrough(), Recorder("first", log), PassThrough(), Recorder("second", log)])
        #expect(try s.backward(dy, ctx, needInputGradient: false, accumulate: false) == nil)
        #expect(log.of("first") == [false] && log.of("second") == [true])
        #expect(try s.backward(dy, ctx, needInputGradient: true, accumulate: false) != nil)
        #expect(log.of("first") == [false, true] && log.of("second") == [true, true])
        // A nested sequence that trains counts as training.
        _ = try Sequential([Sequential([PassThrough(), Recorder("inner", log)]), Recorder("after", log)])
            .backward(dy, ctx, needInputGradient: false, accumulate: false)
        #expect(log.of("inner") == [false] && log.of("after") == [true])
        #expect(!Sequential([PassThrough()]).trainsParameters && Sequential([PassThrough(), Recorder("x", log)]).trainsParameters)
    }

    /// A residual block's body is asked for an input gradient exactly when
    /// the block is (its body's joins the skip path's): a model that opens
    /// with a residual block reads neither. The body still trains.
    @Test func aResidualBodyIsAskedWhatItsBlockIs() throws {
        let log = AskedLog()
        let dy = try Tensor(shape: Shape(2, 3))
        let ctx = PassContext(training: true)
        let block = Residual(Sequential([Recorder("body first", log), Recorder("body second", log)]))
        #expect(try block.backward(dy, ctx, needInputGradient: false, accumulate: false) == nil)
        #expect(log.of("body first") == [false] && log.of("body second") == [true])
        dy.fill(1)
        let dx = try #require(try block.backward(dy, ctx, needInputGradient: true, accumulate: false))
        #expect(log.of("body first") == [false, true] && log.of("body second") == [true, true])
        expectEqualElements(dx.toArray(), [Float](repeating: 2, count: 6))  // dy + the body's dy
        // DP-SGD's first pass, the same.
        let norms = UnsafeMutablePointer<Float>.allocate(capacity: 2)
        defer { norms.deallocate() }
        #expect(try block.addPerExampleSquaredNorms(dy, ctx, into: norms, needInputGradient: false) == nil)
        #expect(log.of("body first norms") == [false] && log.of("body second norms") == [true])
    }

    /// A step computes no input gradient up to the model's first layer that
    /// trains parameters (nothing before it reads one), on one stage and on
    /// the first of two; every later layer, and a later stage's first, does.
    @Test(arguments: [1, 2]) func noInputGradientBeforeTheFirstTrainingLayer(stages: Int) throws {
        let log = AskedLog()
        let model = Model()
        try model.add(PassThrough())
        try model.add(Recorder("first", log))
        if stages > 1 { try model.markStageBoundary() }
        try model.add(PassThrough())
        try model.add(Recorder("second", log))
        try model.initialize(seed: 1)
        var st = StrategyConfig()
        st.pp = stages
        let trainer = try Trainer(model: model, loss: .meanSquaredError, optimizer: OptimizerConfig(), strategy: st)
        let x = try Tensor(shape: Shape(4, 3)), y = try Tensor(shape: Shape(4, 3))
        x.fill(1)
        y.fill(0)
        _ = try trainer.step(inputs: x, targets: y)
        #expect(log.of("first") == [false])
        #expect(log.of("second") == [true])
        // A private step: the per-example norms' pass and the clipped backward.
        try trainer.setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1, sampling: .shuffled))
        _ = try trainer.step(inputs: x, targets: y)
        #expect(log.of("first norms") == [false] && log.of("second norms") == [true])
        #expect(log.of("first") == [false, false] && log.of("second") == [true, true])
    }
}
