import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// A 2-block GPT as nanoGPT builds it (pre-LayerNorm blocks, fused
/// attention, 4x GELU MLP, a linear head), learned positions up to `limit`.
private func gpt(vocab: Int = 13, c: Int = 16, heads: Int = 4, limit: Int = 8, bias: Bool, tied: Bool = false, seed: UInt64 = 3) throws -> Model {
    var layers: [Layer] = [try Embedding(count: vocab, dim: c, initStd: 1), try PositionEmbedding(positions: limit, dim: c, initStd: 1)]
    for _ in 0..<2 {
        layers.append(Residual(Sequential([try LayerNorm(features: c, bias: bias), try CausalSelfAttention(features: c, heads: heads, bias: bias)])))
        layers.append(
            Residual(
                Sequential([
                    try LayerNorm(features: c, bias: bias), try Linear(inFeatures: c, outFeatures: 4 * c, bias: bias), Activation(.gelu),
                    try Linear(inFeatures: 4 * c, outFeatures: c, bias: bias),
                ])))
    }
    let head: Layer = tied ? try TiedClassifier(count: vocab, dim: c) : try Linear(inFeatures: c, outFeatures: vocab, bias: false)
    layers += [try LayerNorm(features: c, bias: bias), head]
    return try makeModel(layers, seed: seed, randomize: false)
}

/// A layer with no incremental path: generation must not use the cache.
private final class Identity: Layer {
    var kind: String { "identity" }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? { dy }
    func replicate() throws -> Layer { Identity() }
}

/// Drives both paths over one growing context (the greedy continuation of
/// `prompt`, `steps` tokens) and returns the worst difference of their
/// next-token logits, relative to the largest logit of that step.
/// `regrowths`: tokens the cached path re-ran the context for to grow.
private func worstLogitDifference(
    _ cached: CachedLogits, _ uncached: WindowLogits, prompt: [Int], steps: Int, regrowths: Int = 0
) throws -> Double {
    var ids = prompt
    var worst = 0.0
    for _ in 0..<steps {
        let a = Array(try cached.logits(after: ids))  // copied: both paths write the model's one output buffer
        let b = try uncached.logits(after: ids)
        #expect(a.count == b.count)
        let scale = b.reduce(0) { max($0, Double(abs($1))) }
        for i in 0..<b.count { worst = max(worst, Double(abs(a[i] - b[i])) / scale) }
        ids.append(b.indices.max { b[$0] < b[$1] }!)
    }
    // Every token within the limit took the one-token path; past it, none.
    let limit = uncached.limit
    #expect(cached.steps == (prompt.count > limit ? 0 : min(limit, prompt.count + steps - 1) - prompt.count - regrowths))
    return worst
}

@Suite struct GenerationCacheTests {
    // Prompts shorter than, equal to and longer than the limit of 8; 20
    // tokens run every one of them past the limit.
    static let prompts = [[4], [1, 7, 2, 9, 0], [3, 3, 5, 12, 6, 0, 1, 8], [2, 11, 4, 4, 9, 0, 7, 1, 5, 3, 10, 6, 12]]

    @Test(arguments: [true, false])
    func cachedLogitsAreTheWindowForwardsLogits(bias: Bool) throws {
        let model = try gpt(bias: bias)
        #expect(model.supportsIncrementalDecoding)
        var worst = 0.0
        for prompt in Self.prompts {
            worst = max(
                worst, try worstLogitDifference(CachedLogits(model, tokens: prompt.count + 20), WindowLogits(model), prompt: prompt, steps: 20))
        }
        print("GenerationCacheTests bias=\(bias): worst relative logit difference \(worst)")
        // Measured 2.8e-7 (bias on) and 1.2e-7 (off): a token's attention
        // is matrix-vector products, which sum in another order than the
        // window's sgemm; a few float32 ulps of the largest logit.
        #expect(worst < 1e-6)
    }

    @Test func aTiedClassifierDecodesWithTheCache() throws {
        let model = try gpt(bias: true, tied: true)
        #expect(model.supportsIncrementalDecoding)
        let prompt = [1, 7, 2]
        let worst = try worstLogitDifference(CachedLogits(model, tokens: 30), WindowLogits(model), prompt: prompt, steps: 12)
        #expect(worst < 1e-6)
    }

    @Test(arguments: [true, false])
    func generateGivesTheSameTokensWithAndWithoutTheCache(bias: Bool) throws {
        let model = try gpt(bias: bias)
        let samplings = [
            SamplingConfig(temperature: 0), SamplingConfig(temperature: 1, seed: 7), SamplingConfig(temperature: 0.8, topK: 4, seed: 21),
        ]
        for prompt in Self.prompts {
            for sampling in samplings {
                let cached = try model.generate(prompt: prompt, count: 20, sampling: sampling)
                let uncached = try model.generate(prompt: prompt, count: 20, sampling: sampling, useCache: false)
                expectEqualElements(cached, uncached, "prompt \(prompt), \(sampling)")
                // A sequence of one repeated token would prove little.
                #expect(Set(cached).count >= 3, "prompt \(prompt), \(sampling): \(cached)")
            }
        }
    }

    @Test func prefillIsTheWholeSequenceForward() throws {
        // The prompt step runs forward's products: the same floats.
        let model = try gpt(bias: true)
        let x = try Tensor([5, 1, 12, 0, 3, 3, 7], shape: Shape(1, 7))
        let whole = Array(UnsafeBufferPointer(start: try model.forward(x, PassContext(training: false)).data, count: 7 * 13))
        try model.beginSequence(capacity: 8)
        let decoded = try model.decode(x, at: 0)
        expectEqualElements(Array(UnsafeBufferPointer(start: decoded.data, count: decoded.count)), whole)
    }

    @Test func decodingOutOfOrderOrPastTheRoomIsRefused() throws {
        let model = try gpt(bias: true)
        try model.beginSequence(capacity: 4)
        let one = try Tensor([2], shape: Shape(1, 1))
        #expect(throws: ParmlError.self) { try model.decode(one, at: 1) }  // position 0 not decoded yet
        _ = try model.decode(try Tensor([1, 2, 3, 4], shape: Shape(1, 4)), at: 0)
        #expect(throws: ParmlError.self) { try model.decode(one, at: 4) }  // room for 4
        #expect(throws: ParmlError.self) { try model.decode(try Tensor([1, 2], shape: Shape(2, 1)), at: 0) }  // batch 2
    }

    @Test func decodingAllocatesNothingPerToken() throws {
        // Every buffer keeps its room and its memory after the first token.
        let model = try gpt(limit: 32, bias: true)
        let cached = try CachedLogits(model, tokens: 30)
        var ids = [1, 2, 3]
        _ = try cached.logits(after: ids)
        ids.append(4)
        _ = try cached.logits(after: ids)
        func buffers() -> [(UnsafeMutablePointer<Float>, Int)] {
            model.allLayers.flatMap { l in
                Mirror(reflecting: l).children.compactMap { ($0.value as? Buffer).map { ($0.tensor.data, $0.tensor.capacity) } }
            }
        }
        let before = buffers()
        for k in 0..<25 {
            ids.append(k % 13)
            _ = try cached.logits(after: ids)
        }
        let after = buffers()
        #expect(before.count == after.count && before.count > 20)
        for (b, a) in zip(before, after) { #expect(b.0 == a.0 && b.1 == a.1) }
    }

    @Test func aModelWithoutPositionsGrowsItsCache() throws {
        // No sequence limit: the caches start with room for 4 and grow to
        // twice the context when full (at 5, 11 and 23 tokens), re-running it.
        let model = try makeModel(
            [try Embedding(count: 9, dim: 8, initStd: 1), try CausalSelfAttention(features: 8, heads: 2), try Linear(inFeatures: 8, outFeatures: 9)],
            seed: 5, randomize: false)
        #expect(model.sequenceLimit == nil)
        let worst = try worstLogitDifference(
            CachedLogits(model, tokens: 40, minimumRoom: 4), WindowLogits(model), prompt: [3, 1], steps: 38, regrowths: 3)
        print("GenerationCacheTests without positions: worst relative logit difference \(worst)")
        #expect(worst < 1e-6)
    }

    @Test func aLayerWithoutAnIncrementalPathFallsBack() throws {
        let model = try makeModel([try Embedding(count: 7, dim: 6, initStd: 1), Identity(), try Linear(inFeatures: 6, outFeatures: 7)], seed: 2)
        #expect(!model.supportsIncrementalDecoding)
        let sampling = SamplingConfig(temperature: 1, seed: 3)
        #expect(try model.generate(prompt: [1, 2], count: 9, sampling: sampling) == model.generate(prompt: [1, 2], count: 9, sampling: sampling, useCache: false))
        #expect(throws: ParmlError.self) { try model.beginSequence(capacity: 4) }  // asked anyway: refused, naming the layer
    }
}
