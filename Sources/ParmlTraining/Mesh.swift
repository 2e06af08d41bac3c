/// Where a rank sits on the dp × pp × tp mesh. tp is innermost, then pp,
/// then dp (as Megatron-LM orders them): world rank = (d·pp + s)·tp + t, so
/// tensor-parallel peers are neighbours and a pipeline is a run of ranks.
struct MeshCoordinate: Sendable, Equatable {
    let data: Int
    let stage: Int
    let tensor: Int
}

struct Mesh: Sendable {
    let dp: Int
    let pp: Int
    let tp: Int

    var worldSize: Int { dp * pp * tp }

    func coordinate(ofRank r: Int) -> MeshCoordinate {
        MeshCoordinate(data: r / (pp * tp), stage: (r / tp) % pp, tensor: r % tp)
    }

    func rank(data d: Int, stage s: Int, tensor t: Int = 0) -> Int { (d * pp + s) * tp + t }

    /// The sub-groups a rank talks in: ranks with equal `color` form one,
    /// ordered by `key`. Both backends split the world by these.
    enum Group {
        /// Same stage and tp index: gradient reduction, ZeRO.
        case data
        /// Same data and tp index: a pipeline's activations and gradients.
        case pipe
        /// Same data index and stage: the slices of split layers.
        case tensor
        /// Same data index: one replica (MPI assembles its parameters).
        case replica

        var name: String {
            switch self {
            case .data: "dp"
            case .pipe: "pp"
            case .tensor: "tp"
            case .replica: "replica"
            }
        }
    }

    func split(_ g: Group, of c: MeshCoordinate) -> (color: Int, key: Int) {
        switch g {
        case .data: (c.stage * tp + c.tensor, c.data)
        case .pipe: (c.data * tp + c.tensor, c.stage)
        case .tensor: (c.data * pp + c.stage, c.tensor)
        case .replica: (c.data, c.stage * tp + c.tensor)
        }
    }
}
