import CParmlTypes
import ParmlTraining

/// Makes the trainer's model whole on this process. Under ZeRO-3 with the
/// MPI backend (dp > 1) each process keeps only its shard of the
/// parameters between steps, gathering each layer's just before it runs;
/// until this call, reads of the whole model on that process
/// (parml_model_get_params, _get_param, _set_param, _predict, _generate,
/// _save, _serialize and their _authenticated forms, _export_onnx,
/// parml_trainer_evaluate and _evaluate_metrics, parml_trainer_create on
/// the model) fail with PARML_ERR_STATE;
/// parml_model_set_params and parml_model_init make it whole. Collective, as
/// FSDP's summon_full_params: every process of the trainer must call it at
/// the same point; the model then stays whole until the next step. A
/// process calling it alone waits for the others until watchdog_seconds,
/// then gets PARML_ERR_COMMUNICATION and the trainer (the job) cannot go
/// on. parml_trainer_fit gathers by itself at the end of every epoch
/// (validation, callbacks) and parml_trainer_save_checkpoint before it
/// writes. Anywhere else (threads backend, ZeRO 0-2, dp = 1) the model is
/// whole already: it returns PARML_OK at once without communicating, so
/// portable host code may always call it.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (an earlier
/// step failed), PARML_ERR_COMMUNICATION (MPI: a process failed or timed
/// out). Since: 0.3.
@c(parml_trainer_gather_params)
public func parmlTrainerGatherParams(_ trainer: parml_trainer?) -> parml_status {
    guarded("parml_trainer_gather_params") {
        try trainerObject(trainer, inFitCallback: .allowed).gatherParameters()
    }
}

/// *whole_out = 1 when the trainer's model holds all its parameters on this
/// process, 0 while it holds only this process's ZeRO-3 shard (MPI, after a
/// step until parml_trainer_gather_params). Local: no communication.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL whole_out). Since: 0.3.
@c(parml_trainer_params_whole)
public func parmlTrainerParamsWhole(_ trainer: parml_trainer?, _ whole_out: UnsafeMutablePointer<Int32>?) -> parml_status {
    guarded("parml_trainer_params_whole") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        try nonNull(whole_out, "whole_out").pointee = t.parametersArePartial ? 0 : 1
    }
}
