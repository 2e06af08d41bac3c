import ParmlTensor

/// Machines the advisor predicts for. Without one it predicts for this
/// machine: one node with its online cores and its measured rates. With
/// one, ranks fill nodes in mesh order (tp innermost, as the trainer places
/// them); a group whose ranks sit on one node uses this machine's measured
/// collectives, a group spanning nodes a ring over the given link:
/// 2(n−1) steps of `latency` plus 2(n−1)/n of the bytes at `bandwidth`.
public struct MachineDescription: Sendable, Equatable {
    public var nodes = 1
    public var ranksPerNode = 1
    public var coresPerNode = 1
    /// Between nodes: bytes per second one link carries, and one message's latency in seconds.
    public var interNodeBandwidth = 12.5e9
    public var interNodeLatency = 5e-6

    public init(nodes: Int, ranksPerNode: Int, coresPerNode: Int, interNodeBandwidth: Double, interNodeLatency: Double) {
        (self.nodes, self.ranksPerNode, self.coresPerNode) = (nodes, ranksPerNode, coresPerNode)
        (self.interNodeBandwidth, self.interNodeLatency) = (interNodeBandwidth, interNodeLatency)
    }

    public var ranks: Int { nodes * ranksPerNode }

    func validate() throws {
        guard nodes >= 1, nodes <= 1 << 16, ranksPerNode >= 1, ranksPerNode <= 4096, coresPerNode >= 1, coresPerNode <= 1 << 16,
            nodes * ranksPerNode <= 4096
        else {
            throw ParmlError.invalidArgument(
                "machine: nodes (\(nodes)), ranks_per_node (\(ranksPerNode)) and cores_per_node (\(coresPerNode)) must be >= 1, "
                    + "with at most 4096 ranks in all")
        }
        guard interNodeBandwidth.isFinite, interNodeBandwidth > 0, interNodeLatency.isFinite, interNodeLatency >= 0 else {
            throw ParmlError.invalidArgument(
                "machine: inter_node_bandwidth must be > 0 and inter_node_latency >= 0 (finite), got \(interNodeBandwidth), \(interNodeLatency)")
        }
    }
}
