// Generation with and without the key/value cache (not a test): tokens/s
// of Model.generate on nanoGPT's character model at its CPU configuration
// (vocab 65, 4 layers, 4 heads, n_embd 128, block 64; random weights drawn
// as nanoGPT draws them: the speed does not depend on training), one
// BLAS thread, a one-token prompt, temperature 1, seed 1.
//
// Two runs: 500 new tokens (the first 63 fit in the block; the other 437
// each re-run the 64-token window, as an uncached pass does) and 63 new
// tokens (all within the block: what the cache saves). Each figure is the
// median of 3 rounds, cached and uncached alternating; the two paths must
// give the same tokens.
//
// usage: OPENBLAS_NUM_THREADS=1 swift run -c release ParmlBenchGenerate

import ParmlBenchSupport
import ParmlModel
import ParmlTensor

let (vocab, layers, heads, width, block) = (65, 4, 4, 128, 64)

func nanoGPT() throws -> Model {
    try benchmarkGPT(layers: layers, heads: heads, width: width, context: block, vocabulary: vocab, tiedHead: false)
}

let model = try nanoGPT()  // loads OpenBLAS
BLAS.threads = 1
let sampling = SamplingConfig(temperature: 1, seed: 1)
for count in [500, block - 1] {
    var cached: [Double] = [], uncached: [Double] = []
    _ = try model.generate(prompt: [0], count: 8, sampling: sampling)  // warm up
    for _ in 0..<3 {
        var t = seconds()
        let a = try model.generate(prompt: [0], count: count, sampling: sampling)
        cached.append(Double(count) / (seconds() - t))
        t = seconds()
        let b = try model.generate(prompt: [0], count: count, sampling: sampling, useCache: false)
        uncached.append(Double(count) / (seconds() - t))
        guard a == b else { fatalError("the cached and uncached paths gave different tokens") }
    }
    report("generate_\(count)_tokens_kv_cache", median(cached), unit: "tokens/s", baseline: "uncached", median(uncached))
}
