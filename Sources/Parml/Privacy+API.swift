import CParmlTypes
import ParmlPrivacy
import ParmlTensor
import ParmlTraining

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

// DP-SGD in the trainer (docs/privacy.md): its settings and the epsilon it has spent.

func defaultPrivacyParams() -> parml_privacy_params {
    let d = PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1)
    var p = parml_privacy_params()
    p.struct_size = MemoryLayout<parml_privacy_params>.size
    p.noise_multiplier = d.noiseMultiplier
    p.max_grad_norm = Double(d.maxGradNorm)
    p.delta = d.delta
    p.sampling = Int32(d.sampling.rawValue)
    return p
}

/// Fills *params with the DP-SGD defaults (noise_multiplier 1, max_grad_norm
/// 1, delta 1e-5, Poisson sampling) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_privacy_params_init)
public func parmlPrivacyParamsInit(_ params: UnsafeMutablePointer<parml_privacy_params>?) -> parml_status {
    guarded("parml_privacy_params_init") { try nonNull(params, "params").pointee = defaultPrivacyParams() }
}

/// Turns DP-SGD on for the trainer's next steps and fits (NULL params: off
/// again): each example's gradient clipped to max_grad_norm, Gaussian noise
/// of standard deviation noise_multiplier * max_grad_norm added once to the
/// clipped sum after the data-parallel reduction (keyed by seed, step and
/// parameter element, so every dp, pp and tp layout, threads or MPI, trains
/// the same model: bit for bit in deterministic mode, but for tp, which
/// splits sums), divided by the batch size (the expected one under Poisson
/// sampling). parml_trainer_fit then samples batches as params->sampling
/// says and reports epsilon after each epoch (parml_epoch_metrics.privacy_epsilon).
/// Models: linear, conv2d, layer_norm, embedding, position_embedding,
/// causal_self_attention and tied_classifier layers with parameters, any
/// layers without (activations, dropout, pooling, flatten), and residual
/// blocks of those.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, small struct_size,
/// noise_multiplier negative or not finite, max_grad_norm not > 0 or not
/// finite, delta outside (0, 1), unknown sampling), PARML_ERR_UNSUPPORTED
/// (a batch_norm layer: use layer_norm; interleaved 1F1B; split_classifier
/// with tp > 1; a tied classifier on another pipeline stage than its
/// embedding; local_steps > 1; gradient compression). Since: 0.3.
@c(parml_trainer_set_privacy)
public func parmlTrainerSetPrivacy(_ trainer: parml_trainer?, _ params: UnsafePointer<parml_privacy_params>?) -> parml_status {
    guarded("parml_trainer_set_privacy") {
        let t = try trainerObject(trainer)
        guard let params else {
            try t.setPrivacy(nil)
            return
        }
        let p = try readSized(params, defaults: defaultPrivacyParams(), name: "params", minimum: MemoryLayout<parml_privacy_params>.size)
        guard let sampling = PrivacySampling(rawValue: Int(p.sampling)) else {
            throw ParmlError.invalidArgument("params->sampling must be PARML_SAMPLING_POISSON or PARML_SAMPLING_SHUFFLED, got \(p.sampling)")
        }
        guard p.max_grad_norm.isFinite, p.max_grad_norm > 0, p.max_grad_norm <= Double(Float.greatestFiniteMagnitude) else {
            throw ParmlError.invalidArgument("privacy: max_grad_norm must be finite and > 0, got \(p.max_grad_norm)")
        }
        try t.setPrivacy(
            PrivacyConfig(noiseMultiplier: p.noise_multiplier, maxGradNorm: Float(p.max_grad_norm), delta: p.delta, sampling: sampling))
    }
}

/// The epsilon of (epsilon, delta)-DP the trainer's private steps have spent
/// so far, in *epsilon_out (0 before any; infinity after a step with
/// noise_multiplier 0): the RDP accountant over its runs of steps, at
/// q = batch_size / dataset size for steps parml_trainer_fit took and q = 1
/// for steps taken with parml_trainer_step (no amplification claimed for
/// batches the trainer did not sample). Counts this trainer's steps and,
/// after parml_trainer_load_checkpoint, those the checkpoint records.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, delta outside (0, 1), NULL
/// epsilon_out). Since: 0.3.
@c(parml_trainer_privacy_spent)
public func parmlTrainerPrivacySpent(_ trainer: parml_trainer?, _ delta: Double, _ epsilon_out: UnsafeMutablePointer<Double>?) -> parml_status {
    guarded("parml_trainer_privacy_spent") {
        let t = try trainerObject(trainer)
        let out = try nonNull(epsilon_out, "epsilon_out")
        out.pointee = try t.privacySpent(delta: delta)
    }
}
