import ParmlParallel

extension RankContext {
    /// MPI: every process of this replica gets every stage's (and tp
    /// rank's) parameters into its host model, by broadcasts from each
    /// member in turn: copies, so the values are the bits their owners hold.
    func assembleHostModel(over replica: Communicator) throws {
        guard let params = model.parameters else { return }
        let tp = layout.mesh.tp
        guard let tensorParallel else {
            // tp = 1: this rank's model is the host's; stage s is member s.
            for (s, r) in layout.stageRanges.enumerated() {
                try replica.broadcast(params.data + r.lowerBound, count: r.count, root: s)
            }
            return
        }
        let widest = layout.stageRanges.map(\.count).max() ?? 0
        try ensure(&assembly, count: 1, size: widest)
        let scratch = assembly[0].data
        for (s, r) in layout.stageRanges.enumerated() {
            for t in 0..<tp {
                let root = s * tp + t
                if root == replica.rank { scratch.update(from: params.data + r.lowerBound, count: r.count) }
                try replica.broadcast(scratch, count: r.count, root: root)
                try tensorParallel.store(peer: t, from: scratch, origin: r.lowerBound, model: model, range: r, replicated: t == 0)
            }
        }
    }
}
