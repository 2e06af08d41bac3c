import CParmlTypes
import ParmlModel
import ParmlTensor

#if canImport(Glibc)
import Glibc
#endif

// The generic way to add a layer (by kind name and attributes) and the query
// that lists the kinds: hosts and bindings discover kinds instead of knowing
// them. The typed parml_model_add_* functions go through the same path.

/// Appends a layer of kind `kind` ("linear", "layer_norm", ...; see
/// parml_layer_kind_count) built from `n_attrs` attributes. Attributes left
/// out take their defaults; a required one left out, an unknown name, a name
/// given twice, a wrong type or a value out of range is refused with a
/// message naming the kind and the attribute. Residual blocks are opened
/// with parml_model_begin_residual, not here. `attrs` may be NULL when
/// n_attrs is 0; the library keeps nothing it points to.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL kind, unknown kind, NULL
/// attrs with n_attrs > 0, a NULL or unknown attribute name, an attribute
/// given twice or of the wrong type or out of range, a required attribute
/// missing), PARML_ERR_STATE (after init). Since: 0.3.
@c(parml_model_add_layer)
public func parmlModelAddLayer(
    _ model: parml_model?, _ kind: UnsafePointer<CChar>?, _ attrs: UnsafePointer<parml_attribute>?, _ n_attrs: Int
) -> parml_status {
    guarded("parml_model_add_layer") {
        let m = try modelObject(model)
        let name = String(cString: try nonNull(kind, "kind"))
        if Model.blockKinds.contains(name) {
            throw ParmlError.invalidArgument("'\(name)' is a block: open it with parml_model_begin_\(name) and close it with parml_model_end_\(name)")
        }
        let k = try LayerKinds.kind(named: name)
        try m.add(k.make(attributeEntries(attrs, n_attrs, kind: name)))
    }
}

/// Reads a C attribute array into checked Swift values (types, NULLs and counts).
private func attributeEntries(_ attrs: UnsafePointer<parml_attribute>?, _ n: Int, kind: String) throws -> [Attributes.Entry] {
    guard n >= 0 else { throw ParmlError.invalidArgument("n_attrs is negative (\(n))") }
    guard n > 0 else { return [] }
    let attrs = try nonNull(attrs, "attrs")
    guard n <= 1024 else { throw ParmlError.invalidArgument("n_attrs = \(n) is more than any kind takes") }
    var out: [Attributes.Entry] = []
    for i in 0..<n {
        let a = attrs[i]
        guard let cname = a.name else { throw ParmlError.invalidArgument("\(kind): attrs[\(i)].name is NULL") }
        let name = String(cString: cname)
        let value: AttributeValue
        switch AttributeType(rawValue: a.type) {
        case .int: value = .int(a.int_value)
        case .float: value = .float(Float(a.float_value))
        case .bool: value = .bool(a.int_value != 0)
        case .string:
            guard let s = a.string_value else { throw ParmlError.invalidArgument("\(kind): attribute '\(name)': string_value is NULL") }
            value = .string(String(cString: s))
        case .ints:
            guard a.n_ints >= 0, a.n_ints <= 1 << 20 else {
                throw ParmlError.invalidArgument("\(kind): attribute '\(name)': n_ints = \(a.n_ints) is out of range 0...2^20")
            }
            if a.n_ints == 0 {
                value = .ints([])
            } else {
                guard let p = a.ints else { throw ParmlError.invalidArgument("\(kind): attribute '\(name)': ints is NULL") }
                value = .ints(Array(UnsafeBufferPointer(start: p, count: Int(a.n_ints))))
            }
        case nil:
            throw ParmlError.invalidArgument("\(kind): attribute '\(name)' has type \(a.type), not a PARML_ATTR_* code")
        }
        out.append(Attributes.Entry(name: name, value: value))
    }
    return out
}

/// The kinds' names and docs as C strings, made once and kept for the
/// process's lifetime (the query hands out borrowed pointers).
private struct KindStrings: @unchecked Sendable {
    struct Attribute {
        let name, defaultText, rule, doc: UnsafePointer<CChar>?
    }
    struct Kind {
        let name, className, doc, requires: UnsafePointer<CChar>?
        let attributes: [Attribute]
    }
    let kinds: [Kind]

    static let shared = KindStrings(
        kinds: LayerKinds.all.map { k in
            Kind(
                name: keep(k.name), className: keep(k.className), doc: keep(k.doc), requires: k.requires.flatMap(keep),
                attributes: k.attributes.map { a in
                    Attribute(
                        name: keep(a.name), defaultText: a.defaultValue.flatMap { keep(text($0)) }, rule: a.rule.flatMap(keep),
                        doc: keep(a.doc))
                })
        })

    private static func keep(_ s: String) -> UnsafePointer<CChar>? { strdup(s).map { UnsafePointer($0) } }

    /// A default as a host parses it: "784", "1e-05", "true", "abc", "[3,3]".
    private static func text(_ v: AttributeValue) -> String {
        if case .string(let s) = v { return s }
        return v.description
    }
}

private func kindStrings(_ index: Int64) throws -> KindStrings.Kind {
    let kinds = KindStrings.shared.kinds
    guard index >= 0, index < Int64(kinds.count) else {
        throw ParmlError.invalidArgument("kind index \(index) is outside 0..<\(kinds.count)")
    }
    return kinds[Int(index)]
}

/// The number of layer kinds this library knows, in *count_out; index them
/// 0 ..< count with parml_layer_kind_info. Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL count_out). Since: 0.3.
@c(parml_layer_kind_count)
public func parmlLayerKindCount(_ count_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_layer_kind_count") { try nonNull(count_out, "count_out").pointee = Int64(LayerKinds.all.count) }
}

/// Layer kind `index`: its name for parml_model_add_layer ("linear"), the
/// class name bindings give it ("Linear", PyTorch's spelling), a line on
/// what it computes, its number of attributes, and what it reads
/// (PARML_LAYER_INPUT_VALUES, or PARML_LAYER_INPUT_TOKEN_IDS for a kind
/// such as embedding whose input is token ids). The strings are static
/// (owned by the library, valid while it is loaded). Any out-pointer may be
/// NULL. Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (index outside 0 ..< count). Since: 0.3.
@c(parml_layer_kind_info)
public func parmlLayerKindInfo(
    _ index: Int64, _ name_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
    _ class_name_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?, _ doc_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
    _ n_attributes_out: UnsafeMutablePointer<Int64>?, _ input_out: UnsafeMutablePointer<Int32>?
) -> parml_status {
    guarded("parml_layer_kind_info") {
        let k = try kindStrings(index)
        name_out?.pointee = k.name
        class_name_out?.pointee = k.className
        doc_out?.pointee = k.doc
        n_attributes_out?.pointee = Int64(k.attributes.count)
        if case .tokenIDs = LayerKinds.all[Int(index)].input {
            input_out?.pointee = PARML_LAYER_INPUT_TOKEN_IDS
        } else {
            input_out?.pointee = PARML_LAYER_INPUT_VALUES
        }
    }
}

/// The kind of an earlier layer that layer kind `index` needs in its
/// model, in *kind_out ("embedding" for tied_classifier, which uses that
/// layer's weight), or NULL when it needs none: adding it to a model
/// without one fails. The string is static (owned by the library, valid
/// while it is loaded). Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (index outside 0 ..< count, NULL
/// kind_out). Since: 0.3.
@c(parml_layer_kind_requires)
public func parmlLayerKindRequires(_ index: Int64, _ kind_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> parml_status {
    guarded("parml_layer_kind_requires") {
        let k = try kindStrings(index)
        try nonNull(kind_out, "kind_out").pointee = k.requires
    }
}

/// Attribute `attribute` of layer kind `index`, in the order the kind
/// declares them (the order bindings take positional arguments in): its
/// name, PARML_ATTR_* type, its default as text ("1e-05", "true"; NULL when
/// the attribute is required), the rule a value must meet in words ("in
/// 1...2^31-1"; NULL when any value of the type is valid), and a line on
/// what it does. The strings are static (owned by the library, valid while
/// it is loaded). Any out-pointer may be NULL. Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (index or attribute out of range). Since: 0.3.
@c(parml_layer_kind_attribute)
public func parmlLayerKindAttribute(
    _ index: Int64, _ attribute: Int64, _ name_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
    _ type_out: UnsafeMutablePointer<Int32>?, _ default_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
    _ rule_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?, _ doc_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> parml_status {
    guarded("parml_layer_kind_attribute") {
        let k = try kindStrings(index)
        guard attribute >= 0, attribute < Int64(k.attributes.count) else {
            throw ParmlError.invalidArgument("attribute index \(attribute) is outside 0..<\(k.attributes.count) for kind \(index)")
        }
        let a = k.attributes[Int(attribute)]
        let spec = LayerKinds.all[Int(index)].attributes[Int(attribute)]
        name_out?.pointee = a.name
        type_out?.pointee = spec.type.rawValue
        default_out?.pointee = a.defaultText
        rule_out?.pointee = a.rule
        doc_out?.pointee = a.doc
    }
}
