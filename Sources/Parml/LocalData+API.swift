import CParmlTypes
import ParmlTraining

/// MPI: with `enabled` nonzero, each process trains on its own data, of any
/// size (docs/data.md, "Local data per process"): parml_trainer_fit and
/// parml_trainer_step take this process's rows only, in any count (zero
/// included), and the global batch is the replicas' rows in replica order.
/// Each epoch of fit lasts as long as the longest replica's data (the
/// replicas agree on it when the epoch starts, one all-reduce); a replica
/// whose data has run out passes empty batches, as PyTorch's Join does for
/// uneven inputs, so no process waits forever, and every step's mean is
/// over the rows actually passed. Turns local batches on; disabling local
/// batches turns this off. A rank with no data passes an empty dataset
/// (parml_dataset_open_shards gives one to a rank without shards).
/// parml_trainer_evaluate stays per process.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle; the threads backend),
/// PARML_ERR_UNSUPPORTED (pipeline or tensor parallelism, deterministic
/// mode). Since: 0.3.
@c(parml_trainer_set_local_data)
public func parmlTrainerSetLocalData(_ trainer: parml_trainer?, _ enabled: Int32) -> parml_status {
    guarded("parml_trainer_set_local_data") {
        try trainerObject(trainer).setLocalData(enabled != 0)
    }
}
