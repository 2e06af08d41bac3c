import ParmlTensor

// A layer kind describes itself here: its stable name, its typed attributes
// (defaults and validation) and how a layer is built from them. Files, the C
// API's parml_model_add_layer, the kinds query and the Python classes all go
// through this description (docs/adding-a-layer.md).

/// The type of an attribute value (the C API's PARML_ATTR_* codes).
public enum AttributeType: Int32, Sendable, CaseIterable {
    case int = 1, float = 2, bool = 3, string = 4, ints = 5

    public var name: String {
        switch self {
        case .int: "int"
        case .float: "float"
        case .bool: "bool"
        case .string: "string"
        case .ints: "int list"
        }
    }
}

/// One typed attribute value.
public enum AttributeValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int64)
    case float(Float)
    case bool(Bool)
    case string(String)
    case ints([Int64])

    public var type: AttributeType {
        switch self {
        case .int: .int
        case .float: .float
        case .bool: .bool
        case .string: .string
        case .ints: .ints
        }
    }

    /// As it appears in summaries, plans and error messages ("784", "0.1", "true", "[3,3]").
    public var description: String {
        switch self {
        case .int(let v): "\(v)"
        case .float(let v): "\(v)"
        case .bool(let v): "\(v)"
        case .string(let v): "'\(v)'"
        case .ints(let v): "[" + v.map(String.init).joined(separator: ",") + "]"
        }
    }
}

/// One attribute a kind takes: name, type, default (nil: the caller must
/// give it), and the rule a value must meet.
public struct AttributeSpec: Sendable {
    public let name: String
    public let type: AttributeType
    public let defaultValue: AttributeValue?
    public let doc: String
    /// What a valid value is, in words ("in 1...2^31-1"); nil when any value of the type is.
    public let rule: String?
    let accepts: @Sendable (AttributeValue) -> Bool

    public init(
        _ name: String, _ type: AttributeType, default defaultValue: AttributeValue? = nil, doc: String,
        rule: String? = nil, accepts: @escaping @Sendable (AttributeValue) -> Bool = { _ in true }
    ) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.doc = doc
        self.rule = rule
        self.accepts = accepts
    }

    /// A size: an int in 1...2^31-1 (features, channels, ...).
    public static func size(_ name: String, default value: Int64? = nil, doc: String) -> AttributeSpec {
        AttributeSpec(name, .int, default: value.map { .int($0) }, doc: doc, rule: "in 1...2^31-1") {
            if case .int(let v) = $0 { return v >= 1 && v <= Int64(Int32.max) }
            return false
        }
    }

    public static func flag(_ name: String, default value: Bool, doc: String) -> AttributeSpec {
        AttributeSpec(name, .bool, default: .bool(value), doc: doc)
    }

    /// Height and width as PyTorch's Conv2d and pooling take them: one int
    /// (both) or two, each in minimum...2^31-1; with `allowsNone`, also the
    /// empty list, which the kind reads as its own default (pooling's stride
    /// is its kernel). Attributes hold the two values the layer uses.
    public static func pair(
        _ name: String, default value: [Int64]? = nil, minimum: Int64, allowsNone: Bool = false, doc: String
    ) -> AttributeSpec {
        let rule = "one or two ints (height, width) in \(minimum)...2^31-1" + (allowsNone ? ", or none" : "")
        return AttributeSpec(name, .ints, default: value.map { .ints($0) }, doc: doc, rule: rule) {
            guard case .ints(let v) = $0 else { return false }
            return (v.isEmpty && allowsNone) || ((1...2).contains(v.count) && v.allSatisfy { $0 >= minimum && $0 <= Int64(Int32.max) })
        }
    }

    /// A float that `valid` accepts (NaN never is), described by `rule`.
    public static func float(
        _ name: String, default value: Float? = nil, doc: String, rule: String, _ valid: @escaping @Sendable (Float) -> Bool
    ) -> AttributeSpec {
        AttributeSpec(name, .float, default: value.map { .float($0) }, doc: doc, rule: rule) {
            if case .float(let v) = $0 { return !v.isNaN && valid(v) }
            return false
        }
    }
}

/// A kind's attribute values, complete (defaults filled in) and checked, in
/// the order the kind declares them.
public struct Attributes: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let value: AttributeValue
        public init(name: String, value: AttributeValue) {
            self.name = name
            self.value = value
        }
    }
    public let entries: [Entry]

    public init(_ entries: [Entry] = []) { self.entries = entries }

    /// In the literal's order.
    public init(dictionaryLiteral pairs: (String, AttributeValue)...) {
        entries = pairs.map { Entry(name: $0.0, value: $0.1) }
    }

    public subscript(_ name: String) -> AttributeValue? { entries.first { $0.name == name }?.value }

    // Typed reads for a kind's `build`, which runs on checked values only:
    // a missing or mistyped name there is a bug in the kind, not bad input.
    public func int(_ name: String) throws -> Int {
        guard case .int(let v)? = self[name] else { throw ParmlError.internal("attribute '\(name)' is not an int") }
        return Int(v)
    }

    public func float(_ name: String) throws -> Float {
        guard case .float(let v)? = self[name] else { throw ParmlError.internal("attribute '\(name)' is not a float") }
        return v
    }

    public func bool(_ name: String) throws -> Bool {
        guard case .bool(let v)? = self[name] else { throw ParmlError.internal("attribute '\(name)' is not a bool") }
        return v
    }

    public func string(_ name: String) throws -> String {
        guard case .string(let v)? = self[name] else { throw ParmlError.internal("attribute '\(name)' is not a string") }
        return v
    }

    public func ints(_ name: String) throws -> [Int64] {
        guard case .ints(let v)? = self[name] else { throw ParmlError.internal("attribute '\(name)' is not an int list") }
        return v
    }

    /// A `.pair` attribute as (height, width): one value stands for both;
    /// nil for the empty list.
    public func pair(_ name: String) throws -> (Int, Int)? {
        let v = try ints(name)
        switch v.count {
        case 0: return nil
        case 1: return (Int(v[0]), Int(v[0]))
        case 2: return (Int(v[0]), Int(v[1]))
        default: throw ParmlError.internal("attribute '\(name)' has \(v.count) values, not a pair")
        }
    }

    /// "in_features=784 out_features=10 bias=true".
    public var text: String { entries.map { "\($0.name)=\($0.value)" }.joined(separator: " ") }
}

/// What a kind reads from its input.
public enum LayerInput: Sendable, Equatable {
    /// Real values it differentiates through (most kinds).
    case values
    /// Token ids (integers held as floats, below 2^24; ids ≥ the attribute
    /// named here are refused): nothing flows back to them.
    case tokenIDs(countAttribute: String)
}

/// A layer kind: everything the engine, its files and its bindings need to
/// know about it, in the kind's own file. `LayerKinds.all` lists them.
public struct LayerKind: Sendable {
    /// The stable name files and the C API use ("linear", "layer_norm").
    public let name: String
    /// The class name bindings give it, spelled as PyTorch's module ("Linear", "LayerNorm").
    public let className: String
    /// One line on what it computes, for the kinds query and docs.
    public let doc: String
    public let attributes: [AttributeSpec]
    public let input: LayerInput
    /// The kind of an earlier layer this one needs in its model (a tied
    /// classifier needs the embedding it is tied to), or nil.
    public let requires: String?
    private let build: @Sendable (Attributes) throws -> Layer

    public init(
        name: String, className: String, doc: String, attributes: [AttributeSpec] = [], input: LayerInput = .values,
        requires: String? = nil, build: @escaping @Sendable (Attributes) throws -> Layer
    ) {
        self.name = name
        self.className = className
        self.doc = doc
        self.attributes = attributes
        self.input = input
        self.requires = requires
        self.build = build
    }

    /// Checks `given` against the kind's attributes (unknown names, missing
    /// required ones, types, rules), fills in defaults, and returns the
    /// complete values; errors name the kind and the attribute.
    public func resolve(_ given: [Attributes.Entry]) throws -> Attributes {
        for (i, e) in given.enumerated() {
            guard attributes.contains(where: { $0.name == e.name }) else {
                let known = attributes.isEmpty ? "it takes none" : "it takes " + attributes.map(\.name).joined(separator: ", ")
                throw ParmlError.invalidArgument("\(name): no attribute named '\(e.name)' (\(known))")
            }
            if given[..<i].contains(where: { $0.name == e.name }) {
                throw ParmlError.invalidArgument("\(name): attribute '\(e.name)' is given twice")
            }
        }
        var out: [Attributes.Entry] = []
        for spec in attributes {
            guard let value = given.first(where: { $0.name == spec.name })?.value ?? spec.defaultValue else {
                throw ParmlError.invalidArgument("\(name): attribute '\(spec.name)' (\(spec.type.name)) is required")
            }
            guard value.type == spec.type else {
                throw ParmlError.invalidArgument("\(name): attribute '\(spec.name)' is \(spec.type.name), got \(value.type.name) \(value)")
            }
            guard spec.accepts(value) else {
                throw ParmlError.invalidArgument("\(name): attribute '\(spec.name)' must be \(spec.rule ?? "valid"), got \(value)")
            }
            out.append(Attributes.Entry(name: spec.name, value: value))
        }
        return Attributes(out)
    }

    /// A new, unbound layer of this kind from attribute values (checked first).
    public func make(_ given: [Attributes.Entry]) throws -> Layer {
        try build(resolve(given))
    }

    public func make(_ given: Attributes = [:]) throws -> Layer { try make(given.entries) }
}
