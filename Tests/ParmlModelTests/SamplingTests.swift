import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

@Suite struct SamplingTests {
    @Test func kthLargestIsWhatSortingPutsThere() {
        // Distinct values, many ties (values rounded to a few levels), and a
        // constant row; every k.
        for (seed, levels) in [(1, 0), (2, 3), (3, 1), (4, 7)] as [(UInt64, Float)] {
            for n in [1, 2, 5, 65, 200] {
                var z = randomArray(n, seed: seed, stream: UInt64(n))
                if levels > 0 { z = z.map { ($0 * levels).rounded() } }
                let sorted = z.sorted(by: >)
                var scratch = [Float](repeating: .nan, count: n)
                for k in 1...n {
                    let got = scratch.withUnsafeMutableBufferPointer { Model.kthLargest(z, count: n, k: k, scratch: $0.baseAddress!) }
                    #expect(got == sorted[k - 1], "n \(n), k \(k), levels \(levels)")
                }
            }
        }
    }
}
