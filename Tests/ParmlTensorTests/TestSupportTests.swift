import Testing
import _ParmlTestSupport

/// The comparison helpers the suites use instead of `#expect(a == b)` on
/// long arrays (Tests/_ParmlTestSupport/Support.swift).
@Suite struct TestSupportTests {
    @Test func elementDifferenceCountsTheDifferencesAndNamesTheFirst() {
        #expect(elementDifference([1, 2, 3] as [Float], [1, 2, 3]) == nil)
        #expect(elementDifference([1, 2, 3] as [Float], [1, 5, 6]) == "2 of 3 elements differ; the first at 1: 2.0 against 5.0")
        #expect(elementDifference([1, 2] as [Int], [1, 2, 3]) == "2 elements against 3; 0 of the first 2 differ")
        #expect(elementDifference([Float.nan], [Float.nan]) != nil, "NaN differs from NaN, as == says")
    }

    /// swift-testing's diff of two such failed arrays ran for over half an
    /// hour; the helpers report the failure at once.
    @Test func longArraysThatDifferEverywhereFailAtOnce() {
        let a = randomArray(200_000, seed: 1), b = a.map { $0 + 1 }
        withKnownIssue("every element differs") { expectSameBits(a, b, "bits") }
        withKnownIssue("every element differs") { expectEqualElements(a, b) }
        expectSameBits(a, a.map { $0 }, "the same bits")
        expectEqualElements(a[10..<20], Array(a[10..<20]))
    }
}
