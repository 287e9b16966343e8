/// A varlink type (<https://varlink.org/Interface-Definition>).
public indirect enum VarlinkType: Sendable, Equatable, CustomStringConvertible {
    case bool, int, float, string, object
    case optional(VarlinkType)
    case array(VarlinkType)
    case map(VarlinkType)
    case structure([VarlinkField])
    case enumeration([String])
    case named(String)

    public var description: String {
        switch self {
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "string"
        case .object: return "object"
        case .optional(let t): return "?" + t.description
        case .array(let t): return "[]" + t.description
        case .map(let t): return "[string]" + t.description
        case .structure(let f): return "(" + f.map { "\($0.name): \($0.type)" }.joined(separator: ", ") + ")"
        case .enumeration(let c): return "(" + c.joined(separator: ", ") + ")"
        case .named(let n): return n
        }
    }
}

public struct VarlinkField: Sendable, Equatable {
    public var name: String
    public var type: VarlinkType
}

/// A parsed interface description.
public struct VarlinkInterface: Sendable {
    public struct Method: Sendable {
        public var name: String
        public var input: [VarlinkField]
        public var output: [VarlinkField]
    }

    public var name: String
    /// The description text as served by `GetInterfaceDescription`.
    public var description: String
    public var types: [String: VarlinkType] = [:]
    public var methods: [String: Method] = [:]
    public var errors: [String: [VarlinkField]] = [:]

    /// Parses `text`; throws naming the line of the first problem.
    public init(parsing text: String) throws(VarlinkIDLError) {
        var p = IDLParser(text)
        description = text
        name = try p.interfaceHeader()
        var t: [String: VarlinkType] = [:], m: [String: Method] = [:], e: [String: [VarlinkField]] = [:]
        while let keyword = try p.keyword() {
            let member = try p.memberName()
            guard t[member] == nil && m[member] == nil && e[member] == nil else { throw p.error("\(member) is defined twice") }
            switch keyword {
            case "type": t[member] = try p.structOrEnum()
            case "method":
                guard case .structure(let input) = try p.structOrEnum(allowEnum: false) else { throw p.error("expected parameters") }
                try p.expect("->")
                guard case .structure(let output) = try p.structOrEnum(allowEnum: false) else { throw p.error("expected results") }
                m[member] = Method(name: member, input: input, output: output)
            case "error":
                guard case .structure(let fields) = try p.structOrEnum(allowEnum: false) else { throw p.error("expected fields") }
                e[member] = fields
            default: throw p.error("unknown keyword \(keyword)")
            }
        }
        types = t
        methods = m
        errors = e
        // Every named type must exist.
        func check(_ type: VarlinkType) throws(VarlinkIDLError) {
            switch type {
            case .named(let n): if t[n] == nil { throw VarlinkIDLError(line: 0, message: "unknown type \(n)") }
            case .optional(let x), .array(let x), .map(let x): try check(x)
            case .structure(let fs): for f in fs { try check(f.type) }
            default: break
            }
        }
        for (_, ty) in t { try check(ty) }
        for (_, me) in m { for f in me.input + me.output { try check(f.type) } }
        for (_, fs) in e { for f in fs { try check(f.type) } }
    }

    /// Checks `parameters` against a struct's fields: required fields present, no unknown field,
    /// every value of its type. Returns the name of the first offending parameter.
    public func invalidParameter(_ parameters: JSONObject, fields: [VarlinkField]) -> String? {
        for key in parameters.keys where !fields.contains(where: { $0.name == key }) { return key }
        for field in fields {
            let value = parameters[field.name]
            if value == nil || value == .null {
                if case .optional = field.type { continue }
                return field.name
            }
            if let value, !conforms(value, to: field.type) { return field.name }
        }
        return nil
    }

    /// Whether `value` has `type`.
    public func conforms(_ value: JSONValue, to type: VarlinkType) -> Bool {
        switch (type, value) {
        case (.optional, .null): return true
        case (.optional(let t), _): return conforms(value, to: t)
        case (.bool, .bool), (.int, .int), (.float, .float), (.float, .int), (.string, .string), (.object, .object): return true
        case (.array(let t), .array(let a)): return a.allSatisfy { conforms($0, to: t) }
        case (.map(let t), .object(let o)): return o.entries.allSatisfy { conforms($0.1, to: t) }
        case (.structure(let fields), .object(let o)): return invalidParameter(o, fields: fields) == nil
        case (.enumeration(let cases), .string(let s)): return cases.contains(s)
        case (.named(let n), _): return types[n].map { conforms(value, to: $0) } ?? false
        default: return false
        }
    }
}

public struct VarlinkIDLError: Error, Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "interface description line \(line): \(message)" }
}

/// A tokenizer and recursive-descent parser for varlink IDL.
struct IDLParser {
    private let s: [Character]
    private var i = 0
    private var line = 1

    init(_ text: String) { s = Array(text) }

    func error(_ m: String) -> VarlinkIDLError { VarlinkIDLError(line: line, message: m) }

    private mutating func skip() {
        while i < s.count {
            if s[i] == "\n" { line += 1; i += 1 }
            else if s[i].isWhitespace { i += 1 }
            else if s[i] == "#" { while i < s.count && s[i] != "\n" { i += 1 } }
            else { break }
        }
    }

    private mutating func word() -> String {
        skip()
        var w = ""
        while i < s.count, s[i].isLetter || s[i].isNumber || s[i] == "_" || s[i] == "." || s[i] == "-" { w.append(s[i]); i += 1 }
        return w
    }

    mutating func expect(_ token: String) throws(VarlinkIDLError) {
        skip()
        for c in token {
            guard i < s.count, s[i] == c else { throw error("expected '\(token)'") }
            i += 1
        }
    }

    private mutating func peek(_ c: Character) -> Bool {
        skip()
        return i < s.count && s[i] == c
    }

    mutating func interfaceHeader() throws(VarlinkIDLError) -> String {
        guard word() == "interface" else { throw error("expected 'interface'") }
        let name = word()
        guard isValidInterfaceName(name) else { throw error("invalid interface name '\(name)'") }
        return name
    }

    /// The next member keyword, or nil at the end.
    mutating func keyword() throws(VarlinkIDLError) -> String? {
        skip()
        if i >= s.count { return nil }
        let w = word()
        guard !w.isEmpty else { throw error("unexpected '\(s[i])'") }
        return w
    }

    mutating func memberName() throws(VarlinkIDLError) -> String {
        let n = word()
        guard isValidMemberName(n) else { throw error("invalid name '\(n)'") }
        return n
    }

    mutating func structOrEnum(allowEnum: Bool = true) throws(VarlinkIDLError) -> VarlinkType {
        try expect("(")
        if peek(")") { i += 1; return .structure([]) }
        var fields: [VarlinkField] = []
        var cases: [String] = []
        while true {
            let name = word()
            guard isValidFieldName(name) else { throw error("invalid field name '\(name)'") }
            if peek(":") {
                guard cases.isEmpty else { throw error("mixed enum and struct") }
                i += 1
                if fields.contains(where: { $0.name == name }) { throw error("field \(name) twice") }
                fields.append(VarlinkField(name: name, type: try type()))
            } else {
                guard fields.isEmpty, allowEnum else { throw error("expected ':' after \(name)") }
                cases.append(name)
            }
            if peek(",") { i += 1; continue }
            try expect(")")
            break
        }
        return cases.isEmpty ? .structure(fields) : .enumeration(cases)
    }

    mutating func type() throws(VarlinkIDLError) -> VarlinkType {
        if peek("?") { i += 1; return .optional(try type()) }
        if peek("[") {
            i += 1
            if peek("]") { i += 1; return .array(try type()) }
            guard word() == "string" else { throw error("expected [] or [string]") }
            try expect("]")
            return .map(try type())
        }
        if peek("(") { return try structOrEnum() }
        let w = word()
        switch w {
        case "bool": return .bool
        case "int": return .int
        case "float": return .float
        case "string": return .string
        case "object": return .object
        default:
            guard isValidMemberName(w) else { throw error("unknown type '\(w)'") }
            return .named(w)
        }
    }
}

/// `org.example.service`, `io.systemd.Resolve`: reverse-domain labels of ASCII letters, digits
/// and inner dashes, at least two, the first starting with a letter
/// (`[A-Za-z]([-]*[A-Za-z0-9])*(\.[A-Za-z0-9]([-]*[A-Za-z0-9])*)+`).
public func isValidInterfaceName(_ n: String) -> Bool {
    let labels = n.split(separator: ".", omittingEmptySubsequences: false)
    guard labels.count >= 2, n.count <= 255, labels[0].first?.isLetter == true else { return false }
    return labels.allSatisfy { l in
        guard let f = l.first, f.isASCII, f.isLetter || f.isNumber, l.last != "-" else { return false }
        return l.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }
}

/// `GetInfo`: an uppercase ASCII letter, then letters and digits.
public func isValidMemberName(_ n: String) -> Bool {
    guard let f = n.first, f.isASCII, f.isUppercase else { return false }
    return n.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
}

/// `field_name`: a letter, then letters, digits and single underscores.
func isValidFieldName(_ n: String) -> Bool {
    guard let f = n.first, f.isASCII, f.isLetter, n.last != "_", !n.contains("__") else { return false }
    return n.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
}
