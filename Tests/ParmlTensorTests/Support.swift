import Testing
import _ParmlTestSupport

@testable import ParmlTensor





/// Index of the largest value (the first one on ties).
func argmax(_ a: ArraySlice<Float>) -> Int {
    var best = a.startIndex
    for i in a.indices where a[i] > a[best] { best = i }
    return best - a.startIndex
}



