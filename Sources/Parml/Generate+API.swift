import CParmlTypes
import ParmlModel
import ParmlTensor

/// Continues `prompt` (n_prompt token ids) by max_new_tokens ids written
/// to tokens_out (room for max_new_tokens). The model must start with a
/// layer that reads token ids (embedding) and give logits (1, T, vocabulary)
/// for ids (1, T); each step feeds it the latest tokens, at most its
/// position limit (position_embedding's max_positions), in inference mode.
/// The next token is the arg-max when temperature is 0; otherwise it is
/// drawn from softmax(logits / temperature) over the top_k largest logits
/// (top_k 0: all), with draw k keyed on (seed, k): a seed gives one
/// sequence. The layers keep a key/value cache: the prompt is one forward
/// pass, then each new token a pass over that token alone, attending over
/// the cached positions; once the context reaches the position limit, each
/// token is a pass over the latest limit tokens again (learned positions
/// shift), as without a cache. The tokens are those one full forward pass
/// per token gives; a model with a layer that cannot decode incrementally
/// runs that pass.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL prompt or tokens_out,
/// n_prompt < 1, max_new_tokens < 0, a prompt id that is no token id of the
/// model, temperature negative or not finite, top_k < 0, a model whose first
/// layer does not read token ids), PARML_ERR_STATE (before init),
/// PARML_ERR_SHAPE (the model's output is not (1, T, vocabulary)),
/// PARML_ERR_OUT_OF_MEMORY, PARML_ERR_BLAS. Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_generate)
public func parmlModelGenerate(
    _ model: parml_model?, _ prompt: UnsafePointer<Int64>?, _ n_prompt: Int64, _ max_new_tokens: Int64, _ temperature: Float,
    _ top_k: Int64, _ seed: UInt64, _ tokens_out: UnsafeMutablePointer<Int64>?
) -> parml_status {
    guarded("parml_model_generate") {
        let m = try modelObject(model)
        let prompt = try nonNull(prompt, "prompt")
        let out = try nonNull(tokens_out, "tokens_out")
        guard n_prompt >= 1, n_prompt <= Int64(Int32.max) else { throw ParmlError.invalidArgument("n_prompt must be in 1...2^31-1, got \(n_prompt)") }
        guard max_new_tokens >= 0, max_new_tokens <= Int64(Int32.max) else {
            throw ParmlError.invalidArgument("max_new_tokens must be in 0...2^31-1, got \(max_new_tokens)")
        }
        guard top_k >= 0, top_k <= Int64(Int32.max) else { throw ParmlError.invalidArgument("top_k must be in 0...2^31-1, got \(top_k)") }
        var ids: [Int] = []
        ids.reserveCapacity(Int(n_prompt))
        for i in 0..<Int(n_prompt) {
            // Ids travel as floats inside the engine: exact below 2^24; the embedding checks the vocabulary.
            guard prompt[i] >= 0, prompt[i] < 1 << 24 else { throw ParmlError.invalidArgument("prompt[\(i)] = \(prompt[i]) is not a token id") }
            ids.append(Int(prompt[i]))
        }
        try BLAS.ensureLoaded()
        let new = try m.generate(
            prompt: ids, count: Int(max_new_tokens), sampling: SamplingConfig(temperature: temperature, topK: Int(top_k), seed: seed))
        for (i, id) in new.enumerated() { out[i] = Int64(id) }
    }
}
