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
}
