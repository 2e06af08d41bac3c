import ParmlTensor

/// Whole parameters on the host: a trainer that keeps only this process's
/// shard between steps (ZeRO-3 under MPI) sets `partialParameters`, and
/// every read of the whole model (forward, get_params, save, export,
/// generate, a copy) refuses with its reason until the trainer gathers them
/// again (`Trainer.gatherParameters`, a collective) or the host sets them all.
extension Model {
    /// Throws `.state` naming `what` while the parameters are partial.
    public func requireWholeParameters(_ what: String) throws {
        guard let why = partialParameters else { return }
        throw ParmlError.state("\(what): \(why)")
    }
}
