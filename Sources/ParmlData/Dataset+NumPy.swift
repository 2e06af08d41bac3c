import ParmlTensor

extension Dataset {
    /// A dataset from two `.npy` files, inputs (N, sample dims...) and
    /// targets (N) or (N, ...), memory-mapped: float32 inputs and float32 or
    /// int32 targets are read in place (pages come from disk as batches
    /// touch them), other dtypes are converted once as `NPY.inputs` and
    /// `NPY.targets` say. The files must not change while the dataset lives.
    public static func loadNPY(inputsPath: UnsafePointer<CChar>, targetsPath: UnsafePointer<CChar>) throws -> Dataset {
        let xFile = try MappedFile(cPath: inputsPath, displayName: String(cString: inputsPath))
        let yFile = try MappedFile(cPath: targetsPath, displayName: String(cString: targetsPath))
        let xs = try npyArray(xFile.bytes, owner: xFile, name: xFile.path)
        let ys = try npyArray(yFile.bytes, owner: yFile, name: yFile.path)
        return try make(inputs: xs, targets: ys)
    }

    /// A dataset from two arrays of one `.npz` archive (numpy.savez or
    /// savez_compressed), named by their keys ("x" finds member x.npy).
    /// Stored members are memory-mapped as in `loadNPY`; deflated ones are
    /// inflated into memory first.
    public static func loadNPZ(path: UnsafePointer<CChar>, inputsKey: String, targetsKey: String) throws -> Dataset {
        let file = try MappedFile(cPath: path, displayName: String(cString: path))
        let members = try Zip.members(of: file.bytes, name: file.path)
        func array(_ key: String) throws -> NPYArray {
            guard let m = members.first(where: { $0.name == key + ".npy" }) ?? members.first(where: { $0.name == key }) else {
                let keys = members.map { $0.name.hasSuffix(".npy") ? String($0.name.dropLast(4)) : $0.name }
                throw ParmlError.format("\(file.path): no array '\(key)' in the archive (it holds \(keys.map { "'\($0)'" }.joined(separator: ", ")))")
            }
            let (bytes, buffer) = try Zip.contents(of: m, in: file.bytes, name: file.path)
            return try npyArray(bytes, owner: buffer ?? file, name: "\(file.path)[\(key)]")
        }
        return try make(inputs: array(inputsKey), targets: array(targetsKey))
    }

    /// One array's header and data, kept alive by `owner`.
    struct NPYArray {
        let header: NPYHeader
        let data: UnsafeRawPointer
        let owner: AnyObject
        let name: String
    }

    static func npyArray(_ bytes: UnsafeRawBufferPointer, owner: AnyObject, name: String) throws -> NPYArray {
        let h = try NPY.header(of: bytes, name: name)
        return NPYArray(header: h, data: bytes.baseAddress! + h.dataOffset, owner: owner, name: name)
    }

    /// Checks the two arrays agree before converting either.
    private static func make(inputs x: NPYArray, targets y: NPYArray) throws -> Dataset {
        guard x.header.dims.count >= 2 else {
            throw ParmlError.shape(
                "\(x.name): inputs need shape (N, sample dims...), got \(x.header.dims); save scalar features as (N, 1)")
        }
        guard x.header.dims[0] == y.header.dims[0] else {
            throw ParmlError.shape("\(x.name) holds \(x.header.dims[0]) samples but \(y.name) holds \(y.header.dims[0]) targets")
        }
        let inputs = try NPY.inputs(x.header, data: x.data, owner: x.owner, name: x.name)
        let targets = try NPY.targets(y.header, data: y.data, owner: y.owner, name: y.name)
        return try Dataset(inputs: inputs, targets: targets)
    }
}
