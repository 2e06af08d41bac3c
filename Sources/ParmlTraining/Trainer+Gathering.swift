import ParmlModel
import ParmlTensor

extension Trainer {
    /// Whether this process's host model holds only its ZeRO-3 shard of
    /// the parameters now (MPI; after a step, until `gatherParameters`).
    public var parametersArePartial: Bool { model.partialParameters != nil }

    /// Makes the host's model whole on this process (ZeRO-3 under MPI keeps
    /// only the process's shard between steps): a collective, which every
    /// process of the trainer must call, as FSDP's `summon_full_params` and
    /// DeepSpeed's `GatheredParameters` are. It stays whole until the next
    /// step. Anywhere else (threads, ZeRO 0-2, dp = 1) the model is whole
    /// already and this returns at once without communicating. A process
    /// that calls it alone waits for the others until the watchdog's
    /// deadline, then fails with `.communication`, and the trainer is
    /// unusable, as after any failed collective.
    public func gatherParameters() throws {
        guard let me = ranks.first, me.gathering != nil, processWorld != nil else { return }
        if let poisoned { throw ParmlError.state("an earlier step failed (\(poisoned)); create a new trainer") }
        do {
            try me.gatherWholeParameters()
        } catch {
            poisoned = "\(error)"
            throw error
        }
    }
}
