import ParmlTensor

#if canImport(Glibc)
import Glibc
#endif

/// A layer that takes sequences up to a length (learned positions):
/// generation feeds it at most that many of the latest tokens.
public protocol SequenceLimitedLayer: Layer {
    var maxPositions: Int { get }
}

/// How generate picks each next token from the model's last logits.
public struct SamplingConfig: Sendable, Equatable {
    /// Logits are divided by it before the softmax; 0 picks the arg-max
    /// (greedy; the first of equal maxima).
    public var temperature: Float = 1
    /// Only the k largest logits can be drawn (ties at the k-th all stay); 0 keeps all.
    public var topK = 0
    /// Draw k of a call is Philox(seed) element k: a seed gives one sequence.
    public var seed: UInt64 = 0

    public init(temperature: Float = 1, topK: Int = 0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }
}

extension Model {
    /// The longest sequence the layers take, or nil when none limits it.
    public var sequenceLimit: Int? { allLayers.compactMap { ($0 as? SequenceLimitedLayer)?.maxPositions }.min() }

    /// Continues `prompt` by `count` tokens. The model must read token ids
    /// and give logits (1, T, vocabulary) for ids (1, T); token k sees the
    /// latest `sequenceLimit` tokens, as if each were a forward pass over
    /// them. With `useCache` and a model whose every layer decodes
    /// incrementally (`supportsIncrementalDecoding`), the layers keep a
    /// key/value cache (`CachedLogits`): one forward over the prompt, then
    /// each token costs a pass over that one token; once the context fills
    /// the sequence limit, each token costs a forward over the window again
    /// (learned positions shift), as without the cache. Otherwise, or
    /// without `useCache`, every token is a forward over the latest
    /// `sequenceLimit` tokens (`WindowLogits`). Both give the same tokens.
    public func generate(prompt: [Int], count: Int, sampling: SamplingConfig, useCache: Bool = true) throws -> [Int] {
        guard isInitialized else { throw ParmlError.state("the model is not initialised; initialise it first") }
        try requireWholeParameters("generate")
        guard let first = root.layers.first, case .tokenIDs? = first.descriptor?.input else {
            throw ParmlError.invalidArgument("generate needs a model whose first layer reads token ids (an embedding)")
        }
        guard !prompt.isEmpty else { throw ParmlError.invalidArgument("generate needs a prompt of at least one token") }
        guard count >= 0 else { throw ParmlError.invalidArgument("the number of tokens to generate is negative (\(count))") }
        guard sampling.temperature >= 0, sampling.temperature.isFinite else {
            throw ParmlError.invalidArgument("temperature must be finite and >= 0, got \(sampling.temperature)")
        }
        guard sampling.topK >= 0 else { throw ParmlError.invalidArgument("top_k must be >= 0, got \(sampling.topK)") }
        let source: NextTokenLogits =
            useCache && supportsIncrementalDecoding
            ? try CachedLogits(self, tokens: prompt.count + count) : try WindowLogits(self)
        var ids = prompt
        ids.reserveCapacity(prompt.count + count)
        let rng = Philox(seed: sampling.seed)
        let scratch = Buffer()  // top-k's selection, sized by the first token
        for k in 0..<count {
            let z = try source.logits(after: ids)
            let draw = rng.uniform(stream: RandomStream.sampling, index: UInt64(k))
            ids.append(pick(z.baseAddress!, count: z.count, sampling: sampling, draw: draw, scratch: try scratch.shaped(Shape(z.count)).data))
        }
        return Array(ids[prompt.count...])
    }

    /// One token from logits `z`: the arg-max at temperature 0, otherwise a
    /// draw `u` in [0, 1) through the softmax of the top-k logits (`scratch`:
    /// room for n floats, so a token allocates nothing).
    func pick(_ z: UnsafePointer<Float>, count n: Int, sampling: SamplingConfig, draw u: Float, scratch: UnsafeMutablePointer<Float>) -> Int {
        var best = 0
        for i in 1..<n where z[i] > z[best] { best = i }
        guard sampling.temperature > 0 else { return best }
        var floor = -Float.infinity
        if sampling.topK > 0 && sampling.topK < n {
            floor = Model.kthLargest(z, count: n, k: sampling.topK, scratch: scratch)
        }
        let t = Double(sampling.temperature), top = Double(z[best])
        var total = 0.0
        for i in 0..<n where z[i] >= floor { total += Glibc.exp((Double(z[i]) - top) / t) }
        var acc = 0.0
        let target = Double(u) * total
        var last = best
        for i in 0..<n where z[i] >= floor {
            acc += Glibc.exp((Double(z[i]) - top) / t)
            last = i
            if acc > target { return i }
        }
        return last
    }

    /// The k-th largest of z[0..<n], 1 ≤ k ≤ n, by quickselect on a copy in
    /// `scratch` (room for n): what sorting descending would put at k − 1.
    static func kthLargest(_ z: UnsafePointer<Float>, count n: Int, k: Int, scratch a: UnsafeMutablePointer<Float>) -> Float {
        a.update(from: z, count: n)
        var lo = 0, hi = n - 1
        let target = k - 1
        while lo < hi {
            // Hoare partition, descending: [lo, j] ≥ pivot ≥ [i, hi].
            let pivot = a[lo + (hi - lo) / 2]
            var i = lo, j = hi
            while i <= j {
                while a[i] > pivot { i += 1 }
                while a[j] < pivot { j -= 1 }
                if i <= j {
                    (a[i], a[j]) = (a[j], a[i])
                    i += 1
                    j -= 1
                }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { break }
        }
        return a[target]
    }
}
