import ParmlTensor

/// A column of a CSV table: by its header name or its index from 0.
public enum CSVColumn: Sendable, Equatable {
    case name(String)
    case index(Int)
}

/// What a CSV label column holds.
public enum CSVLabels: Sendable {
    /// Class indices, integers 0...2^31-1 (int32 targets).
    case classIndex
    /// Numbers (float32 targets, regression).
    case value
    /// Class names, any text: the distinct names sorted by their UTF-8
    /// bytes are classes 0, 1, ... (int32 targets); the dataset keeps them.
    case name
}

/// How a CSV table becomes a dataset.
public struct CSVOptions: Sendable {
    /// The field separator, one byte (',' ';' '\t' ...).
    public var delimiter: UInt8 = UInt8(ascii: ",")
    /// Whether the first non-blank line names the columns.
    public var header = true
    /// The label column; index -1 is the last column.
    public var label: CSVColumn = .index(-1)
    /// The feature columns in the order they go into a sample; nil: every
    /// column but the label, in file order.
    public var features: [CSVColumn]? = nil
    /// What the label column holds.
    public var labels: CSVLabels = .classIndex

    public init() {}
}

/// Reader of delimited text tables (RFC 4180 quoting: a field may be
/// wrapped in double quotes, "" inside being one quote). Blank lines are
/// skipped; \r\n and \n both end a line. Every cell that is read must be a
/// finite number; errors name the line (from 1) and the column (from 0).
public enum CSV {
    /// Longest numeric cell read (longer ones are refused, not truncated).
    static let maxNumberLength = 127

    /// One line's fields as byte ranges (quotes removed from the ends).
    struct Record {
        var line = 0
        var fields: [Range<Int>] = []
        var quoted: [Bool] = []
    }

    /// Calls `body` with each non-blank record of `bytes`.
    static func forEachRecord(_ bytes: UnsafeRawBufferPointer, delimiter: UInt8, name: String, _ body: (Record) throws -> Void) throws {
        let quote = UInt8(ascii: "\""), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        var record = Record()
        var at = 0, line = 1
        let n = bytes.count
        while at < n {
            record.line = line
            record.fields.removeAll(keepingCapacity: true)
            record.quoted.removeAll(keepingCapacity: true)
            var blank = true
            // One field per turn; the record ends at a newline outside quotes.
            while true {
                var start = at
                while start < n, bytes[start] == 0x20 || bytes[start] == 0x09, bytes[start] != delimiter { start += 1 }
                var end: Int
                var isQuoted = false
                if start < n, bytes[start] == quote {
                    isQuoted = true
                    var i = start + 1
                    while true {
                        guard i < n else { throw ParmlError.format("\(name):\(record.line): a quoted field opened here is never closed") }
                        if bytes[i] == lf { line += 1 }
                        if bytes[i] == quote {
                            if i + 1 < n, bytes[i + 1] == quote { i += 2; continue }
                            break
                        }
                        i += 1
                    }
                    end = i
                    at = i + 1
                    while at < n, bytes[at] == 0x20 || bytes[at] == 0x09, bytes[at] != delimiter { at += 1 }
                    guard at >= n || bytes[at] == delimiter || bytes[at] == lf || bytes[at] == cr else {
                        throw ParmlError.format("\(name):\(line): text after the closing quote of column \(record.fields.count)")
                    }
                    start += 1
                    blank = false
                } else {
                    at = start
                    while at < n, bytes[at] != delimiter, bytes[at] != lf { at += 1 }
                    end = at
                    while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 || bytes[end - 1] == cr { end -= 1 }
                    if end > start || (at < n && bytes[at] == delimiter) { blank = false }
                }
                record.fields.append(start..<end)
                record.quoted.append(isQuoted)
                if at < n, bytes[at] == delimiter {
                    at += 1
                    continue
                }
                if at < n, bytes[at] == cr { at += 1 }
                if at < n, bytes[at] == lf { at += 1 }
                line += 1
                break
            }
            if !blank { try body(record) }
        }
    }

    /// A field's text with quoting undone (for header names and messages).
    static func text(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
        var out: [UInt8] = []
        var i = r.lowerBound
        while i < r.upperBound {
            out.append(bytes[i])
            i += bytes[i] == UInt8(ascii: "\"") && i + 1 < r.upperBound && bytes[i + 1] == UInt8(ascii: "\"") ? 2 : 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Reads a finite number from a field, or nil. Swift's parser is
    /// strtod's syntax in the C locale: '.' is the decimal point whatever
    /// the host set with setlocale.
    static func number(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) -> Double? {
        var start = r.lowerBound, end = r.upperBound
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        guard end > start, end - start <= maxNumberLength,
            let v = Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)), v.isFinite
        else { return nil }
        return v
    }
}

extension Dataset {
    /// A dataset from a CSV table: inputs (N, features) float32, targets
    /// (N) int32 class indices (given, or numbered names) or float32 values.
    /// The file is mapped and read twice (count, then parse), so nothing is
    /// built until every row checks out: a ragged row, an empty or
    /// non-numeric cell, or a label that is not a class index (or an empty
    /// name) is `.format` naming its line and column; a column that is not
    /// there is `.invalidArgument`.
    public static func loadCSV(cPath: UnsafePointer<CChar>, options: CSVOptions) throws -> Dataset {
        let file = try MappedFile(cPath: cPath, displayName: String(cString: cPath))
        let bytes = file.bytes, name = file.path
        guard bytes.count > 0 else { throw ParmlError.format("\(name): the file is empty") }

        // Pass 1: the header, the column count and the rows.
        var names: [String]? = nil
        var columns = -1, rows = 0, firstLine = 0
        try CSV.forEachRecord(bytes, delimiter: options.delimiter, name: name) { r in
            if options.header && names == nil {
                names = r.fields.map { CSV.text(bytes, $0) }
                columns = r.fields.count
                firstLine = r.line
                return
            }
            if columns < 0 { columns = r.fields.count; firstLine = r.line }
            guard r.fields.count == columns else {
                let what = options.header ? "the header (line \(firstLine))" : "line \(firstLine)"
                throw ParmlError.format("\(name):\(r.line): \(r.fields.count) columns, but \(what) has \(columns) (a ragged row)")
            }
            rows += 1
        }
        guard rows >= 1 else { throw ParmlError.format("\(name): no data rows\(options.header ? " after the header" : "")") }

        func resolve(_ c: CSVColumn, _ what: String) throws -> Int {
            switch c {
            case .index(let i):
                let j = i < 0 ? columns + i : i
                guard j >= 0, j < columns else {
                    throw ParmlError.invalidArgument("\(name): \(what) column \(i) is out of range: the file has \(columns) columns (0...\(columns - 1))")
                }
                return j
            case .name(let s):
                guard let names else { throw ParmlError.invalidArgument("\(name): \(what) column '\(s)' is named, but the file has no header") }
                guard let j = names.firstIndex(of: s) else {
                    throw ParmlError.invalidArgument(
                        "\(name): no column '\(s)' for the \(what) in the header (columns: \(names.map { "'\($0)'" }.joined(separator: ", ")))")
                }
                return j
            }
        }
        let label = try resolve(options.label, "label")
        let features = try options.features.map { try $0.map { try resolve($0, "feature") } } ?? (0..<columns).filter { $0 != label }
        guard !features.isEmpty else { throw ParmlError.invalidArgument("\(name): no feature columns (the file has \(columns) columns, one the label)") }
        guard !features.contains(label) else { throw ParmlError.invalidArgument("\(name): column \(label) is both the label and a feature") }

        // Pass 2: the numbers (and the label names, numbered once all are read).
        let inputs = try Tensor(shape: Shape(rows, features.count))
        let targets = try Tensor(shape: Shape(rows), dtype: options.labels == .value ? .float32 : .int32)
        var labelNames: [String] = []
        func columnName(_ j: Int) -> String { names.map { " ('\($0[j])')" } ?? "" }
        func cell(_ r: CSV.Record, _ j: Int) throws -> Double {
            if let v = CSV.number(bytes, r.fields[j]) { return v }
            let t = CSV.text(bytes, r.fields[j])
            let why = t.isEmpty ? "is empty (fill or drop missing values first)" : "'\(t.count > 40 ? String(t.prefix(40)) + "..." : t)' is not a finite number"
            return try { throw ParmlError.format("\(name):\(r.line): column \(j)\(columnName(j)) \(why)") }()
        }
        var row = 0
        var skipHeader = options.header
        let width = features.count
        try CSV.forEachRecord(bytes, delimiter: options.delimiter, name: name) { r in
            if skipHeader { skipHeader = false; return }
            for (k, j) in features.enumerated() { inputs.data[row * width + k] = Float(try cell(r, j)) }
            switch options.labels {
            case .classIndex:
                let y = try cell(r, label)
                guard y >= 0, y <= Double(Int32.max), y.rounded(.towardZero) == y else {
                    throw ParmlError.format("\(name):\(r.line): column \(label)\(columnName(label)) is \(y), not a class index (an integer in 0...2^31-1)")
                }
                targets.int32s[row] = Int32(y)
            case .value:
                targets.data[row] = Float(try cell(r, label))
            case .name:
                let t = CSV.text(bytes, r.fields[label])
                guard !t.isEmpty else { throw ParmlError.format("\(name):\(r.line): column \(label)\(columnName(label)) is empty (a class name is needed)") }
                labelNames.append(t)
            }
            row += 1
        }
        var classNames: [String]? = nil
        if options.labels == .name {
            // Sorted by bytes, so the numbering does not depend on row order or locale.
            let names = Set(labelNames).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int32($0)) })
            for (i, t) in labelNames.enumerated() { targets.int32s[i] = index[t]! }
            classNames = names
        }
        let dataset = try Dataset(inputs: inputs, targets: targets)
        dataset.classNames = classNames
        return dataset
    }
}
