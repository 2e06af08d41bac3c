import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

@Suite struct StrategyTests {
    @Test func dataParallelLayoutsAreSupported() throws {
        for dp in [2, 3, 4] {
            for zero in 0...3 {
                var s = StrategyConfig()
                s.dp = dp
                s.zeroStage = zero
                s.deterministic = zero == 1
                try s.validate()
                #expect(s.worldSize == dp)
            }
        }
    }

    @Test func serialIsSupported() throws {
        let s = StrategyConfig()
        try s.validate()
        #expect(s.worldSize == 1)
        var t = StrategyConfig()
        t.deterministic = false
        t.blasThreads = 2
        t.seed = 99
        try t.validate()
    }

    @Test func largeLayoutsAreValid() throws {
        var s = StrategyConfig()
        s.dp = 2
        s.tp = 4
        s.pp = 2
        s.microBatches = 2
        s.backend = .mpi
        try s.validate()
        #expect(s.worldSize == 16)
    }

    @Test(arguments: [
        ("dp", 0), ("dp", -1), ("tp", 0), ("pp", 0), ("micro_batches", 0), ("zero_stage", 4), ("zero_stage", -1),
        ("blas_threads", -1), ("blas_threads", 1025), ("grad_chunk", 0), ("bucket_bytes", 0), ("micro_batches", 65537),
    ])
    func invalidValues(_ field: String, _ value: Int) {
        var s = StrategyConfig()
        switch field {
        case "dp": s.dp = value
        case "tp": s.tp = value
        case "pp": s.pp = value
        case "micro_batches": s.microBatches = value
        case "zero_stage": s.zeroStage = value
        case "grad_chunk": s.gradientChunk = value
        case "bucket_bytes": s.bucketBytes = value
        default: s.blasThreads = value
        }
        expectError(parmlError { try s.validate() }, "invalidArgument", mentions: [field, "\(value)"])
    }

    @Test func tooManyRanks() {
        var s = StrategyConfig()
        s.dp = 1 << 20
        s.tp = 1 << 20
        s.pp = 1 << 30
        expectError(parmlError { try s.validate() }, "invalidArgument")
        s.dp = 64
        s.tp = 64
        s.pp = 2
        expectError(parmlError { try s.validate() }, "invalidArgument")
    }

    @Test func blasThreadsPerRank() {
        var s = StrategyConfig()
        #expect(s.resolvedBLASThreads(cores: 8) == 8)
        #expect(s.resolvedBLASThreads(cores: 1) == 1)
        s.blasThreads = 3
        #expect(s.resolvedBLASThreads(cores: 8) == 3)
        s.blasThreads = 0
        s.dp = 4
        #expect(s.resolvedBLASThreads(cores: 8) == 2)
        #expect(s.resolvedBLASThreads(cores: 2) == 1)
        // MPI over two machines of 8 cores, 2 of the 4 processes on each.
        #expect(s.resolvedBLASThreads(cores: 8, localRanks: 2) == 4)
        #expect(s.localRanks == 4)  // threads backend: every rank is local
        // Deterministic mode: one thread per rank in every layout unless set
        // (oneDNN's convolutions round by their thread count).
        s.deterministic = true
        s.dp = 1
        #expect(s.resolvedBLASThreads(cores: 8) == 1)
        s.blasThreads = 2
        #expect(s.resolvedBLASThreads(cores: 8) == 2)
    }
}
