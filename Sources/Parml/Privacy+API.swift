import CParmlTypes
import ParmlPrivacy
import ParmlTensor

// Differential-privacy accounting (docs/privacy.md): epsilon spent by DP-SGD steps,
// and the noise that keeps it under a target. Arithmetic only; no handles.

/// Runs an accountant call, turning its refusals into PARML_ERR_INVALID_ARGUMENT.
private func accounting(_ body: () throws -> Double) throws -> Double {
    do {
        return try body()
    } catch let e as RDPAccountant.InvalidInput {
        throw ParmlError.invalidArgument(e.message)
    }
}

/// The epsilon of (epsilon, delta)-differential privacy spent by `steps`
/// steps of DP-SGD with Poisson sampling at rate q (each example in a batch
/// with probability q) and Gaussian noise of standard deviation sigma times
/// the clipping norm, in *epsilon_out: Renyi-DP accounting of the sampled Gaussian mechanism
/// (Mironov et al. 2019) converted as Google's dp-accounting RdpAccountant
/// does, over its orders (docs/privacy.md). Fixed-size shuffled batches are
/// not covered by this analysis.
/// Errors: PARML_ERR_INVALID_ARGUMENT (q outside (0, 1], sigma not > 0,
/// steps < 0, delta outside (0, 1), NULL epsilon_out). Thread-safe. Since: 0.3.
@c(parml_privacy_epsilon)
public func parmlPrivacyEpsilon(_ q: Double, _ sigma: Double, _ steps: Int64, _ delta: Double, _ epsilon_out: UnsafeMutablePointer<Double>?)
    -> parml_status
{
    guarded("parml_privacy_epsilon") {
        let out = try nonNull(epsilon_out, "epsilon_out")
        guard let n = Int(exactly: steps) else { throw ParmlError.invalidArgument("steps \(steps) does not fit") }
        out.pointee = try accounting { try RDPAccountant.epsilon(samplingRate: q, noiseMultiplier: sigma, steps: n, delta: delta) }
    }
}

/// The smallest noise multiplier sigma (to a relative 1e-6, rounded up) for
/// which parml_privacy_epsilon(q, sigma, steps, delta) is at most
/// target_epsilon, in *sigma_out. For E epochs at rate q, steps = ceil(E / q).
/// Errors: PARML_ERR_INVALID_ARGUMENT (target_epsilon not > 0, q outside
/// (0, 1], steps < 1, delta outside (0, 1), no sigma up to 1e6 reaches the
/// target, NULL sigma_out). Thread-safe. Since: 0.3.
@c(parml_privacy_noise_multiplier)
public func parmlPrivacyNoiseMultiplier(
    _ target_epsilon: Double, _ q: Double, _ steps: Int64, _ delta: Double, _ sigma_out: UnsafeMutablePointer<Double>?
) -> parml_status {
    guarded("parml_privacy_noise_multiplier") {
        let out = try nonNull(sigma_out, "sigma_out")
        guard let n = Int(exactly: steps) else { throw ParmlError.invalidArgument("steps \(steps) does not fit") }
        out.pointee = try accounting {
            try RDPAccountant.noiseMultiplier(targetEpsilon: target_epsilon, samplingRate: q, steps: n, delta: delta)
        }
    }
}
