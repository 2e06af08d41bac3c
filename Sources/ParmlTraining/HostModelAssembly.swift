import ParmlParallel

extension RankContext {
    /// After the update: the host's model holds the new parameters. MPI
    /// with pp or tp > 1 assembles it from the replica's processes; threads
    /// with tp > 1 copy data rank 0's slices back into it (otherwise rank 0's
    /// model is the host's, or shares its arena).
    func updateHostModel() throws {
        if let replica = comms?.replica {
            if layout.mesh.pp > 1 || layout.mesh.tp > 1 { try assembleHostModel(over: replica) }
        } else if let tensorParallel, coordinate.data == 0 {
            for vs in virtualStages { try tensorParallel.store(from: model, range: vs.range, replicated: coordinate.tensor == 0) }
        }
    }

    /// MPI: every process of this replica gets every stage's (and tp
    /// rank's) parameters into its host model, by broadcasts from each
    /// member in turn: copies, so the values are the bits their owners hold.
    func assembleHostModel(over replica: Communicator) throws {
        guard let params = model.parameters else { return }
        let tp = layout.mesh.tp
        guard let tensorParallel else {
            // tp = 1: this rank's model is the host's; stage s is member s
            // (and holds run c when c mod pp = s).
            for (c, r) in layout.stageRanges.enumerated() {
                try replica.broadcast(params.data + r.lowerBound, count: r.count, root: layout.stage(holding: c))
            }
            return
        }
        let widest = layout.stageRanges.map(\.count).max() ?? 0
        try ensure(&assembly, count: 1, size: widest)
        let scratch = assembly[0].data
        for (c, r) in layout.stageRanges.enumerated() {
            for t in 0..<tp {
                let root = layout.stage(holding: c) * tp + t
                if root == replica.rank { scratch.update(from: params.data + r.lowerBound, count: r.count) }
                try replica.broadcast(scratch, count: r.count, root: root)
                try tensorParallel.store(peer: t, from: scratch, origin: r.lowerBound, model: model, range: r, replicated: t == 0)
            }
        }
    }
}
