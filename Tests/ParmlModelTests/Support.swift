import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel


func randomTensor(_ shape: Shape, seed: UInt64, stream: UInt64 = 0, low: Float = -1, high: Float = 1) throws -> Tensor {
    try Tensor(randomArray(shape.count, seed: seed, stream: stream, low: low, high: high), shape: shape)
}




/// A model of `layers`, initialised from `seed`; with `randomize`, every
/// parameter is then redrawn from U(−1, 1) so that LayerNorm's γ = 1, β = 0
/// and small Linear weights do not hide wrong terms in a gradient.
func makeModel(_ layers: [Layer], seed: UInt64 = 1, randomize: Bool = true) throws -> Model {
    try BLAS.ensureLoaded()  // layers call sgemm directly; the engine's entry points load it
    let model = Model()
    for l in layers { try model.add(l) }
    try model.initialize(seed: seed)
    if randomize, let p = model.parameters, p.count > 0 {
        let values = randomArray(p.count, seed: seed, stream: 77, low: -1, high: 1)
        try values.withUnsafeBufferPointer { try model.setParameters(from: $0.baseAddress!) }
    }
    return model
}

/// The worst mismatch of one gradient check.
struct GradCheckResult: CustomStringConvertible {
    var worstRatio = 0.0  // |analytic − fd| / tolerance; ≤ 1 passes
    var worstAbs = 0.0
    var worstIndex = -1
    var analytic = 0.0
    var numeric = 0.0
    var checked = 0
    var description: String {
        "max abs diff \(worstAbs) at element \(worstIndex) (analytic \(analytic), finite difference \(numeric)), "
            + "error/tolerance \(worstRatio) over \(checked) elements"
    }
    mutating func add(index: Int, analytic a: Double, numeric n: Double, atol: Double, rtol: Double) {
        checked += 1
        let diff = abs(a - n)
        let ratio = diff / (atol + rtol * abs(n))
        worstAbs = maxNaN(worstAbs, diff)
        if ratio.isNaN || ratio > worstRatio || worstIndex < 0 {
            worstRatio = ratio
            worstIndex = index
            analytic = a
            numeric = n
        }
    }
}

/// Central finite differences of a scalar function of `values[i]`:
/// (f(v + h) − f(v − h)) / (v₊ − v₋), with the step actually taken in float
/// (v ± h rounded) as the denominator, so rounding of v ± h costs nothing.
func centralDifference(_ values: UnsafeMutablePointer<Float>, _ i: Int, eps: Float, _ f: () throws -> Double) rethrows -> Double {
    let v = values[i]
    let plus = v + eps, minus = v - eps
    values[i] = plus
    let fp = try f()
    values[i] = minus
    let fm = try f()
    values[i] = v
    return (fp - fm) / (Double(plus) - Double(minus))
}

/// Checks a model's parameter gradients (read from `model.gradients`) and
/// its input gradient against central differences of
///     L(x, θ) = Σ r·y        (r fixed random, so dL/dy = r),
/// with L summed in Double from the float outputs.
///
/// Error budget, for eps = h and outputs y = O(1): the float forward pass
/// rounds each y by a few ulps (≲ 1e-6 for the small layers used here), so L
/// carries noise of about 1e-6·√(outputs) ≈ 1e-5, and the difference
/// quotient about 1e-5 / (2h) = 5e-4 at h = 1e-2 in a bad case. Truncation is
/// h²·|f'''|/6 ≈ 2e-5 for tanh/GELU/sigmoid/LayerNorm at h = 1e-2, and zero
/// for maps that are linear in the perturbed value (Linear, Dropout,
/// Flatten), which are checked with a larger h and tighter tolerances.
/// Default tolerance: 5e-4 absolute + 2e-3 relative; the worst measured error
/// is 1.3e-4 (nested residual with LayerNorm and GELU), most are ~1e-6.
/// A wrong term in a backward pass shows up at 1e-2 or more.
func gradientCheck(
    model: Model, input: Tensor, ctx: PassContext, eps: Float = 1e-2, atol: Double = 5e-4, rtol: Double = 2e-3,
    checkInput: Bool = true, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let y = try model.forward(input, ctx)
    let r = randomArray(y.count, seed: 4242, stream: UInt64(y.count))
    let dy = try Tensor(r, shape: y.shape)
    guard let dx = try model.root.backward(dy, ctx, needInputGradient: true, accumulate: false) else {
        Issue.record("no input gradient", sourceLocation: sourceLocation)
        return
    }
    #expect(dx.shape == input.shape, "input gradient shape \(dx.shape) vs input \(input.shape)", sourceLocation: sourceLocation)
    let inputGrad = dx.toArray()
    let paramGrad = model.gradients?.toArray() ?? []

    func loss() throws -> Double {
        let out = try model.forward(input, ctx)
        var s = 0.0
        for i in 0..<out.count { s += Double(r[i]) * Double(out.data[i]) }
        return s
    }

    var params = GradCheckResult()
    if let p = model.parameters {
        for j in 0..<p.count {
            let fd = try centralDifference(p.data, j, eps: eps, loss)
            params.add(index: j, analytic: Double(paramGrad[j]), numeric: fd, atol: atol, rtol: rtol)
        }
    }
    #expect(params.worstRatio <= 1, "parameter gradient: \(params)", sourceLocation: sourceLocation)
    // Token ids are not differentiable (a perturbed id is no id).
    guard checkInput else { return }
    var inputs = GradCheckResult()
    for j in 0..<input.count {
        let fd = try centralDifference(input.data, j, eps: eps, loss)
        inputs.add(index: j, analytic: Double(inputGrad[j]), numeric: fd, atol: atol, rtol: rtol)
    }
    #expect(inputs.worstRatio <= 1, "input gradient: \(inputs)", sourceLocation: sourceLocation)
    #expect(inputs.checked == input.count)
}



