#if canImport(Glibc)
import Glibc
#endif

/// The privacy spent by DP-SGD: Rényi-DP accounting of the Poisson-sampled
/// Gaussian mechanism (Mironov, Talwar, Zhang 2019, "Rényi Differential
/// Privacy of the Sampled Gaussian Mechanism"), turned into (ε, δ) with the
/// conversion Google's `dp-accounting` RdpAccountant uses (Canonne, Kamath,
/// Steinke 2020 / Balle et al. 2020), over the same orders, so the two agree.
///
/// One step samples each example independently with probability `q` and adds
/// Gaussian noise of `sigma` times the clipping norm to the summed gradient;
/// `steps` of them compose by adding their RDP at each order.
public enum RDPAccountant {
    /// The orders dp-accounting's RdpAccountant uses by default: 1.1...10.9 by
    /// tenths, 11...63, and 128, 256, 512, 1024.
    public static let defaultOrders: [Double] = {
        let tenths: [Double] = (1..<100).map { 1 + Double($0) / 10.0 }
        let integers: [Double] = (11..<64).map { Double($0) }
        return tenths + integers + [128, 256, 512, 1024]
    }()

    /// A refused input, with a message that names it and its valid range.
    public struct InvalidInput: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// ε for `delta` after `steps` steps of sampling rate `q` and noise
    /// multiplier `sigma`.
    public static func epsilon(samplingRate q: Double, noiseMultiplier sigma: Double, steps: Int, delta: Double) throws -> Double {
        try check(q: q, sigma: sigma, steps: steps, delta: delta)
        let one = rdp(samplingRate: q, noiseMultiplier: sigma, orders: defaultOrders)
        return epsilon(orders: defaultOrders, rdp: one.map { $0 * Double(steps) }, delta: delta).epsilon
    }

    /// The smallest noise multiplier (to a relative 1e-6, rounded up) whose ε
    /// after `steps` steps of rate `q` is at most `targetEpsilon` for `delta`.
    public static func noiseMultiplier(targetEpsilon: Double, samplingRate q: Double, steps: Int, delta: Double) throws -> Double {
        guard targetEpsilon.isFinite, targetEpsilon > 0 else {
            throw InvalidInput(message: "the target epsilon must be a finite number > 0, got \(targetEpsilon)")
        }
        guard steps >= 1 else { throw InvalidInput(message: "steps must be at least 1 to calibrate noise, got \(steps)") }
        try check(q: q, sigma: 1, steps: steps, delta: delta)
        let eps = { (sigma: Double) in
            let one = rdp(samplingRate: q, noiseMultiplier: sigma, orders: defaultOrders)
            return epsilon(orders: defaultOrders, rdp: one.map { $0 * Double(steps) }, delta: delta).epsilon
        }
        // ε falls as σ grows: bracket the target, then bisect in log σ.
        var hi = 1.0
        while eps(hi) > targetEpsilon {
            hi *= 2
            guard hi <= 1e6 else {
                throw InvalidInput(message: "no noise multiplier up to 1e6 reaches epsilon \(targetEpsilon) in \(steps) steps at q \(q), delta \(delta)")
            }
        }
        var lo = hi / 2
        while lo > 1e-6 && eps(lo) <= targetEpsilon { (hi, lo) = (lo, lo / 2) }
        while hi - lo > 1e-6 * hi {
            let mid = (lo * hi).squareRoot()
            if eps(mid) <= targetEpsilon { hi = mid } else { lo = mid }
        }
        return hi
    }

    /// Refuses what the analysis does not cover, naming the argument.
    static func check(q: Double, sigma: Double, steps: Int, delta: Double) throws {
        guard q > 0, q <= 1 else { throw InvalidInput(message: "the sampling rate q must be in (0, 1], got \(q)") }
        guard sigma.isFinite, sigma > 0 else {
            throw InvalidInput(message: "the noise multiplier sigma must be a finite number > 0, got \(sigma)")
        }
        guard delta > 0, delta < 1 else { throw InvalidInput(message: "delta must be in (0, 1), got \(delta)") }
        guard steps >= 0 else { throw InvalidInput(message: "steps must be >= 0, got \(steps)") }
    }

    /// RDP of one step at each order (may be +inf where a series does not converge).
    public static func rdp(samplingRate q: Double, noiseMultiplier sigma: Double, orders: [Double]) -> [Double] {
        orders.map { alpha in
            if q == 1 { return alpha / (2 * sigma * sigma) }
            let logA = alpha.rounded() == alpha ? logAInteger(q, sigma, Int(alpha)) : logAFractional(q, sigma, alpha)
            return logA / (alpha - 1)
        }
    }

    /// ε and the order that gives it, from total RDP values (Proposition 12 of
    /// arXiv:2004.00010 v4; the KL bound δ ≥ sqrt(1 - exp(-rdp)) gives ε = 0).
    public static func epsilon(orders: [Double], rdp: [Double], delta: Double) -> (epsilon: Double, order: Double) {
        var best = (epsilon: Double.infinity, order: orders.first ?? 0)
        for (a, r) in zip(orders, rdp) {
            let eps: Double
            if r < 0 {
                eps = 0
            } else if delta * delta + expm1(-r) > 0 {
                eps = 0
            } else if a > 1.01 {
                // Unstable as a → 1, and not useful there.
                eps = r + log1p(-1 / a) - log(delta * a) / (a - 1)
            } else {
                eps = .infinity
            }
            if eps < best.epsilon { best = (eps, a) }
        }
        return (max(0, best.epsilon), best.order)
    }

    // MARK: - log A_α (Mironov et al. 2019, Section 3)

    /// log A_α for integer α: the binomial expansion, summed in log space.
    static func logAInteger(_ q: Double, _ sigma: Double, _ alpha: Int) -> Double {
        var logA = -Double.infinity
        let logQ = log(q), log1mQ = log1p(-q)
        for i in 0...alpha {
            let k = Double(i)
            let coef = logBinomial(Double(alpha), k) + k * logQ + Double(alpha - i) * log1mQ
            logA = logAdd(logA, coef + (k * k - k) / (2 * sigma * sigma))
        }
        return logA
    }

    /// The series dp-accounting sums for fractional α stops after this many terms.
    static let maxFractionalTerms = 1000

    /// log A_α for fractional α: the two series of Section 3.3 (integrals
    /// below and above z0), until both terms fall 30 nats under the sum;
    /// +inf when they do not within maxFractionalTerms (the order is then
    /// useless, as dp-accounting treats it).
    static func logAFractional(_ q: Double, _ sigma: Double, _ alpha: Double) -> Double {
        var logA0 = -Double.infinity, logA1 = -Double.infinity
        let z0 = sigma * sigma * log(1 / q - 1) + 0.5
        let logQ = log(q), log1mQ = log1p(-q)
        let root2Sigma = 2.0.squareRoot() * sigma
        var lastS0 = -Double.infinity, lastS1 = -Double.infinity
        for n in 0..<maxFractionalTerms {
            let i = Double(n), j = alpha - i
            let coef = logBinomial(alpha, i)
            let logT0 = coef + i * logQ + j * log1mQ
            let logT1 = coef + j * logQ + i * log1mQ
            let logE0 = log(0.5) + logErfc((i - z0) / root2Sigma)
            let logE1 = log(0.5) + logErfc((z0 - j) / root2Sigma)
            let logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0
            let logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1
            logA0 = logAdd(logA0, logS0)
            logA1 = logAdd(logA1, logS1)
            let total = logAdd(logA0, logA1)
            if logS0 < lastS0 && logS1 < lastS1 && max(logS0, logS1) < total - 30 { return total }
            (lastS0, lastS1) = (logS0, logS1)
        }
        return .infinity
    }

    // MARK: - Log-space helpers

    static func logAdd(_ x: Double, _ y: Double) -> Double {
        let (a, b) = (min(x, y), max(x, y))
        if a == -.infinity { return b }
        return log1p(exp(a - b)) + b
    }

    /// log |C(n, k)| through log-gamma (n need not be an integer).
    static func logBinomial(_ n: Double, _ k: Double) -> Double {
        logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1)
    }

    /// log |Γ(x)| (lgamma_r: the reentrant form, no global sign).
    static func logGamma(_ x: Double) -> Double {
        var sign: Int32 = 0
        return lgamma_r(x, &sign)
    }

    /// log erfc(x), accurate where erfc(x) itself underflows: erfc is
    /// computed to full relative precision down to ~1e-300 (x ≈ 26), so past
    /// x = 25 the asymptotic series at infinity takes over (its next term is
    /// under 1e-12 there).
    static func logErfc(_ x: Double) -> Double {
        if x <= 25 { return log(erfc(x)) }
        let x2 = x * x
        let x4 = x2 * x2
        let lead: Double = -log(Double.pi) / 2 - log(x) - x2
        let tail: Double = -0.5 / x2 + 0.625 / x4 - (37.0 / 24.0) / (x4 * x2) + (353.0 / 64.0) / (x4 * x4)
        return lead + tail
    }
}
