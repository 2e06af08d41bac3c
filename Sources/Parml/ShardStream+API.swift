import CParmlTypes
import ParmlData
import ParmlTensor

/// Opens a sharded dataset that streams from disk while training runs:
/// `path` is a manifest (docs/data.md, "Streaming"), or a directory holding
/// `manifest.txt`, naming shards of .npy pairs or stored (np.savez) .npz
/// archives. This process reads shards i with i % ranks == rank (ranks = 1,
/// rank = 0: all; a rank past the last shard gets an empty dataset, which
/// only parml_trainer_set_local_data training takes). One prefetch thread reads the inputs sequentially with
/// pread (pages dropped from the page cache once read) through a shuffle
/// buffer of shuffle_buffer rows (1: no shuffling, shards and rows in
/// manifest order; otherwise the shard order and the buffer's draws come
/// from seed and the epoch, so an epoch's order is reproducible) into a
/// ring of prefetch_rows float32 rows (0: 4096). Memory is those buffers
/// plus the targets of this rank's shards (4 bytes a value, read now), not
/// the inputs. Inputs are float32, float16, float64, uint8 (divided by 255,
/// as the .npy loader does), int8, int16, uint16 or bool; targets as in
/// parml_dataset_load_npy. parml_trainer_fit takes the dataset as any
/// other; it orders itself, so fit's shuffle flag and class-balanced
/// sampling do not apply (sampling is PARML_ERR_INVALID_ARGUMENT). Every
/// shard's header is checked before this returns: on an error *out is
/// untouched and nothing stays open. A shard truncated later is
/// PARML_ERR_IO from the fit that reads it. The caller owns *out
/// (parml_dataset_free, which ends the thread).
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out, rank outside
/// 0..ranks-1, shuffle_buffer outside 1...2^30, prefetch_rows outside
/// 0...2^30), PARML_ERR_IO (the manifest or a
/// shard it names is missing or unreadable), PARML_ERR_FORMAT (a bad
/// manifest line, a shard whose rows, dtype or dims disagree with the
/// manifest, a truncated shard or one whose header promises more or fewer
/// bytes than follow, a negative label), PARML_ERR_UNSUPPORTED (compressed
/// .npz members, int32/int64/uint32/uint64 inputs, and the .npy
/// refusals), PARML_ERR_SHAPE (inputs of rank 1), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.3.
@c(parml_dataset_open_shards)
public func parmlDatasetOpenShards(
    _ path: UnsafePointer<CChar>?, _ seed: UInt64, _ shuffle_buffer: Int64, _ prefetch_rows: Int64, _ rank: Int32, _ ranks: Int32,
    _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_open_shards") {
        let path = String(cString: try nonNull(path, "path"))
        let out = try nonNull(out, "out")
        guard shuffle_buffer >= 1, shuffle_buffer <= 1 << 30 else {
            throw ParmlError.invalidArgument("shuffle_buffer must be 1 (no shuffling) ... 2^30 rows, got \(shuffle_buffer)")
        }
        guard prefetch_rows >= 0, prefetch_rows <= 1 << 30 else {
            throw ParmlError.invalidArgument("prefetch_rows must be 0 (4096) ... 2^30, got \(prefetch_rows)")
        }
        let d = try ShardStream(
            path: path, seed: seed, shuffleBuffer: Int(shuffle_buffer), prefetchRows: prefetch_rows == 0 ? 4096 : Int(prefetch_rows),
            rank: Int(rank), ranks: Int(ranks))
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}
