import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlData

@Suite struct DatasetSplitTests {
    /// 103 samples, classes 0..3 in shares 60/25/15/3; input row i holds i.
    private func skewed(int32 targets: Bool = false) throws -> Dataset {
        let n = 103
        let labels = (0..<n).map { i -> Int in i % 100 < 60 ? 0 : i % 100 < 85 ? 1 : i % 100 < 97 ? 2 : 3 }
        let x = try Tensor((0..<n).flatMap { [Float($0), -Float($0)] }, shape: Shape(n, 2))
        if targets {
            let y = try Tensor(shape: Shape(n), dtype: .int32)
            for i in 0..<n { y.int32s[i] = Int32(labels[i]) }
            return try Dataset(inputs: x, targets: y)
        }
        return try Dataset(inputs: x, targets: try Tensor(labels.map(Float.init), shape: Shape(n)))
    }

    @Test(arguments: [false, true])
    func stratifiedKeepsEachClassShare(int32: Bool) throws {
        let d = try skewed(int32: int32)
        let (t, v) = try d.splitRows(validationFraction: 0.2, seed: 7, stratified: true)
        // Disjoint, covering, each in dataset order.
        #expect(Set(t).isDisjoint(with: v) && t.count + v.count == d.count)
        #expect(t == t.sorted() && v == v.sorted())
        let label = { (i: Int) in int32 ? Int(d.targets.int32s[i]) : Int(d.targets.data[i]) }
        let perClass = (0..<4).map { c in (0..<d.count).filter { label($0) == c }.count }
        for c in 0..<4 {
            let inValidation = v.filter { label($0) == c }.count
            #expect(inValidation == Int((Double(perClass[c]) * 0.2).rounded()), "class \(c): \(inValidation) of \(perClass[c])")
        }
        // The datasets hold copies of those rows, in order.
        let (train, validation) = try d.split(validationFraction: 0.2, seed: 7, stratified: true)
        #expect(validation.count == v.count && train.count == t.count)
        #expect((0..<v.count).allSatisfy { validation.inputs.data[2 * $0] == Float(v[$0]) && validation.inputs.data[2 * $0 + 1] == -Float(v[$0]) })
        #expect(validation.targets.dtype == d.targets.dtype)
        #expect((0..<t.count).allSatisfy { train.inputs.data[2 * $0] == Float(t[$0]) })
    }

    @Test func seededAndReproducible() throws {
        let d = try skewed()
        let a = try d.splitRows(validationFraction: 0.3, seed: 1, stratified: true)
        let b = try d.splitRows(validationFraction: 0.3, seed: 1, stratified: true)
        let c = try d.splitRows(validationFraction: 0.3, seed: 2, stratified: true)
        #expect(a.validation == b.validation && a.validation != c.validation)
        // Unstratified: round(n·f) rows, whatever their classes.
        let plain = try d.splitRows(validationFraction: 0.3, seed: 1, stratified: false)
        #expect(plain.validation.count == 31)
    }

    @Test func badInput() throws {
        let d = try skewed()
        for f in [0, 1, -0.5, 1.5, .nan] {
            expectError(parmlError { _ = try d.splitRows(validationFraction: f, seed: 0, stratified: true) }, "invalidArgument", mentions: ["(0, 1)"])
        }
        expectError(parmlError { _ = try d.splitRows(validationFraction: 0.001, seed: 0, stratified: false) }, "invalidArgument", mentions: ["validation empty"])
        let regression = try Dataset(inputs: try Tensor(shape: Shape(4, 1)), targets: try Tensor([0.5, 1, 2, 3], shape: Shape(4)))
        expectError(parmlError { _ = try regression.splitRows(validationFraction: 0.5, seed: 0, stratified: true) }, "invalidArgument", mentions: ["class index"])
        _ = try regression.splitRows(validationFraction: 0.5, seed: 0, stratified: false)
    }
}
