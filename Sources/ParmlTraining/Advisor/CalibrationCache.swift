#if canImport(Glibc)
import Glibc
#endif
import ParmlModel
import ParmlTensor

/// Where a calibration lives between runs: a small text file in
/// `PARML_CACHE_DIR`, else `$XDG_CACHE_HOME/parml`, else `~/.cache/parml`
/// (a directory argument overrides all three). A file that cannot be read,
/// does not parse, or was measured on another CPU, core count or library
/// version is measured again and replaced; so is one measured on a busy
/// machine (load average above half the cores) once the load has fallen
/// to half of what it was, since other processes' work lowered its rates.
/// Failing to write it is not an error (the advice uses the fresh figures).
public enum CalibrationCache {
    static let fileName = "calibration-v2.txt"
    static let header = "parml-calibration 2"

    /// The directory the cache uses when none is given.
    public static func defaultDirectory() -> String? {
        func env(_ name: String) -> String? {
            guard let v = getenv(name), v.pointee != 0 else { return nil }
            return String(cString: v)
        }
        if let d = env("PARML_CACHE_DIR") { return d }
        if let x = env("XDG_CACHE_HOME") { return x + "/parml" }
        if let h = env("HOME") { return h + "/.cache/parml" }
        return nil
    }

    /// How a calibration was obtained.
    public enum Origin: String, Sendable {
        case cached, measured
        /// Measured because the file was unreadable or corrupt, or from another CPU or version.
        case replaced
        /// Measured again because the cached figures were taken on a busier machine.
        case remeasuredQuieter
    }

    /// The calibration for this machine: the cached one when it matches,
    /// else a fresh measurement (stored when the directory is writable).
    public static func load(directory: String?, libraryVersion: String) throws -> (MachineCalibration, Origin) {
        let dir = directory ?? defaultDirectory()
        let path = dir.map { $0 + "/" + fileName }
        var origin = Origin.measured
        if let path, access(path, F_OK) == 0 {
            let cpu = MachineCalibration.currentCPU()
            if let text = try? read(path), let c = parse(text), c.cpuModel == cpu.model, c.cores == cpu.cores,
                c.libraryVersion == libraryVersion
            {
                guard measuredBusier(c, now: MachineCalibration.currentLoadAverage()) else { return (c, .cached) }
                origin = .remeasuredQuieter
            } else {
                origin = .replaced
            }
        }
        let c = try MachineCalibration.measure(libraryVersion: libraryVersion)
        if let dir, let path { try? store(c, directory: dir, path: path) }
        return (c, origin)
    }

    /// Whether `c` was measured while other work loaded the machine that
    /// has since eased (its rates understate a quieter machine's).
    static func measuredBusier(_ c: MachineCalibration, now: Double?) -> Bool {
        guard let now else { return false }
        return c.loadAverage > 0.5 * Double(c.cores) && now < 0.5 * c.loadAverage
    }

    // MARK: - The file

    static func format(_ c: MachineCalibration) -> String {
        var lines = [
            header, "cpu_model=\(c.cpuModel)", "cores=\(c.cores)", "library_version=\(c.libraryVersion)", "seconds=\(c.seconds)",
            "elementwise=\(c.elementwiseBytesPerSecond)", "load_average=\(c.loadAverage)", "page_fault=\(c.pageFaultSeconds)",
            "elementwise_all_cores=\(c.elementwiseAllCoresBytesPerSecond)",
        ]
        for p in c.products {
            let word = p.form == .nn ? "product" : "product_\(p.form.rawValue)"
            lines.append("\(word) \(p.m) \(p.n) \(p.k) \(p.threads) \(p.flopsPerSecond)")
        }
        for kernel in ArithmeticKernel.allCases {
            if let x = c.arithmetic[kernel] { lines.append("arithmetic \(kernel.rawValue) \(x)") }
        }
        for a in c.allReduce { lines.append("allreduce \(a.ranks) \(a.latency) \(a.bytesPerSecond)") }
        for h in c.handover { lines.append("handover \(h.ranks) \(h.latency)") }
        for x in c.send { lines.append("send \(x.ranks) \(x.latency) \(x.bytesPerSecond)") }
        for x in c.concurrency { lines.append("concurrency \(x.threads) \(x.flopsPerSecond)") }
        for x in c.concurrentPageFaults { lines.append("page_fault_threads \(x.threads) \(x.seconds)") }
        for x in c.elementwiseBySize { lines.append("elementwise_size \(x.bytes) \(x.bytesPerSecond)") }
        for x in c.elementwiseAllCoresBySize { lines.append("elementwise_all_cores_size \(x.bytes) \(x.bytesPerSecond)") }
        for (job, r) in c.processRates.sorted(by: { $0.key < $1.key }) {
            for (name, rates) in [("process_allreduce", r.allReduce), ("process_broadcast", r.broadcast), ("process_allgather", r.allGather)] {
                for a in rates { lines.append("\(name) \(job) \(a.ranks) \(a.latency) \(a.bytesPerSecond) \(a.largeBytesPerSecond)") }
            }
            if let x = r.send { lines.append("process_send \(job) \(x.latency) \(x.bytesPerSecond) \(x.largeBytesPerSecond)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The calibration in `text`, or nil when any line is malformed or a figure is missing or not positive.
    static func parse(_ text: String) -> MachineCalibration? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.first.map(String.init) == header else { return nil }
        var fields: [String: String] = [:]
        var products: [MachineCalibration.ProductRate] = []
        var allReduce: [MachineCalibration.CollectiveRate] = []
        var handover: [MachineCalibration.CollectiveRate] = []
        var send: [MachineCalibration.CollectiveRate] = []
        var concurrency: [(threads: Int, flopsPerSecond: Double)] = []
        var pageFaults: [(threads: Int, seconds: Double)] = []
        var bySize: [(bytes: Double, bytesPerSecond: Double)] = []
        var allCoresBySize: [(bytes: Double, bytesPerSecond: Double)] = []
        var processRates: [Int: ProcessRates] = [:]
        var arithmetic: [ArithmeticKernel: Double] = [:]
        func positive(_ s: Substring) -> Double? { Double(s).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil } }
        for line in lines.dropFirst() {
            let words = line.split(separator: " ")
            switch words.first {
            case "product", "product_nt", "product_tn":
                guard words.count == 6, let m = Int(words[1]), let n = Int(words[2]), let k = Int(words[3]), let t = Int(words[4]),
                    let r = positive(words[5]), m > 0, n > 0, k > 0, t > 0, r > 0
                else { return nil }
                let form: MachineCalibration.ProductForm = words[0] == "product" ? .nn : words[0] == "product_nt" ? .nt : .tn
                products.append(.init(m: m, n: n, k: k, threads: t, flopsPerSecond: r, form: form))
            case "arithmetic":
                guard words.count == 3, let kernel = ArithmeticKernel(rawValue: String(words[1])), let x = positive(words[2]), x > 0
                else { return nil }
                arithmetic[kernel] = x
            case "allreduce":
                guard words.count == 4, let n = Int(words[1]), let l = positive(words[2]), let b = positive(words[3]), n > 1, b > 0
                else { return nil }
                allReduce.append(.init(ranks: n, latency: l, bytesPerSecond: b))
            case "send":
                guard words.count == 4, let n = Int(words[1]), let l = positive(words[2]), let b = positive(words[3]), n > 1, b > 0
                else { return nil }
                send.append(.init(ranks: n, latency: l, bytesPerSecond: b))
            case "concurrency":
                guard words.count == 3, let n = Int(words[1]), let r = positive(words[2]), n >= 1, r > 0 else { return nil }
                concurrency.append((n, r))
            case "page_fault_threads":
                guard words.count == 3, let n = Int(words[1]), let t = positive(words[2]), n > 1, t > 0 else { return nil }
                pageFaults.append((n, t))
            case "elementwise_size":
                guard words.count == 3, let b = positive(words[1]), let r = positive(words[2]), b > 0, r > 0 else { return nil }
                bySize.append((b, r))
            case "elementwise_all_cores_size":
                guard words.count == 3, let b = positive(words[1]), let r = positive(words[2]), b > 0, r > 0 else { return nil }
                allCoresBySize.append((b, r))
            case "process_allreduce", "process_broadcast", "process_allgather":
                guard words.count == 6, let job = Int(words[1]), let n = Int(words[2]), let l = positive(words[3]),
                    let b = positive(words[4]), let past = positive(words[5]), n > 1, job >= n, job % n == 0, b > 0, past > 0
                else { return nil }
                let rate = MachineCalibration.CollectiveRate(ranks: n, latency: l, bytesPerSecond: b, largeBytesPerSecond: past)
                switch words[0] {
                case "process_allreduce": processRates[job, default: ProcessRates()].allReduce.append(rate)
                case "process_broadcast": processRates[job, default: ProcessRates()].broadcast.append(rate)
                default: processRates[job, default: ProcessRates()].allGather.append(rate)
                }
            case "process_send":
                guard words.count == 5, let job = Int(words[1]), let l = positive(words[2]), let b = positive(words[3]),
                    let past = positive(words[4]), job > 1, b > 0, past > 0
                else { return nil }
                processRates[job, default: ProcessRates()].send = .init(ranks: 2, latency: l, bytesPerSecond: b, largeBytesPerSecond: past)
            case "handover":
                guard words.count == 3, let n = Int(words[1]), let l = positive(words[2]), n > 1 else { return nil }
                handover.append(.init(ranks: n, latency: l, bytesPerSecond: .infinity))
            default:
                guard let eq = line.firstIndex(of: "=") else { return nil }
                fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
        }
        // A file without the small-inner-dimension products (k < n, measured
        // since the weight gradients of micro-batches were found to run at
        // half the forward rate), without the products of fewer than 16 rows
        // (a pipeline's small pieces), without each form's products (NT and
        // TN measured up to 2× from NN on Zen 3), or without the element-wise rates by
        // working set (on every core too, where there are several), or
        // without every arithmetic-bound kernel's rate (GELU's measured 6×
        // what its traffic said on Zen 3), is measured again, as a corrupt one is.
        guard let model = fields["cpu_model"], let cores = fields["cores"].flatMap({ Int($0) }), cores > 0,
            let version = fields["library_version"], let ew = fields["elementwise"].flatMap({ Double($0) }), ew.isFinite, ew > 0,
            let load = fields["load_average"].flatMap({ positive(Substring($0)) }),
            let fault = fields["page_fault"].flatMap({ positive(Substring($0)) }),
            let ewAll = fields["elementwise_all_cores"].flatMap({ positive(Substring($0)) }),
            products.contains(where: { $0.threads == 1 && $0.k < $0.n }), products.contains(where: { $0.threads == 1 && $0.m < 16 }),
            products.contains(where: { $0.threads == 1 && $0.form == .nt }), products.contains(where: { $0.threads == 1 && $0.form == .tn }),
            !allReduce.isEmpty, !handover.isEmpty, !send.isEmpty,
            concurrency.contains(where: { $0.threads == 1 }), !pageFaults.isEmpty, !bySize.isEmpty, cores == 1 || !allCoresBySize.isEmpty,
            ArithmeticKernel.allCases.allSatisfy({ arithmetic[$0] != nil })
        else { return nil }
        var c = MachineCalibration(cpuModel: model, cores: cores, libraryVersion: version)
        c.products = products
        c.allReduce = allReduce
        c.handover = handover
        c.send = send
        c.concurrency = concurrency
        c.concurrentPageFaults = pageFaults
        c.elementwiseBySize = bySize
        c.elementwiseAllCoresBySize = allCoresBySize
        c.processRates = processRates
        c.arithmetic = arithmetic
        c.elementwiseBytesPerSecond = ew
        c.loadAverage = load
        c.pageFaultSeconds = fault
        c.elementwiseAllCoresBytesPerSecond = ewAll
        c.seconds = fields["seconds"].flatMap { Double($0) } ?? 0
        return c
    }

    /// Writes the file through a temporary name and a rename, creating the directory.
    static func store(_ c: MachineCalibration, directory: String, path: String) throws {
        var prefix = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/") {
            prefix += "/" + part
            mkdir(prefix, 0o755)  // fails harmlessly where it exists
        }
        let temp = path + ".tmp\(getpid())"
        guard let f = fopen(temp, "w") else { throw ParmlError.io("cannot write \(temp)") }
        let text = format(c)
        let ok = fputs(text, f) >= 0
        fclose(f)
        guard ok, rename(temp, path) == 0 else {
            unlink(temp)
            throw ParmlError.io("cannot write \(path)")
        }
    }

    /// A whole text file (at most 1 MiB; a calibration is a few hundred bytes).
    static func read(_ path: String) throws -> String {
        guard let f = fopen(path, "r") else { throw ParmlError.io("cannot open \(path)") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > 1 << 20 { throw ParmlError.io("\(path) is larger than a calibration file") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
