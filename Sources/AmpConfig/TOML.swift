/// A TOML value, with the line it was defined on.
///
/// amp reads TOML with its own parser (TOML 1.0: tables, arrays of tables, inline tables,
/// dotted and quoted keys, all string forms, integers in every base, floats, booleans,
/// date-times kept as text) because its configuration errors must name the file, line and
/// key of a bad value, which needs source positions for every value.
public indirect enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    /// An offset/local date-time, date or time, kept as written.
    case dateTime(String)
    case array([TOMLValue])
    case table(TOMLTable)

    /// The TOML type name, for messages ("string", "integer" …).
    public var typeName: String {
        switch self {
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .boolean: return "boolean"
        case .dateTime: return "date-time"
        case .array: return "array"
        case .table: return "table"
        }
    }
}

/// A TOML table: keys in document order, each with its value and line.
public struct TOMLTable: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var value: TOMLValue
        public var line: Int
    }

    public private(set) var keys: [String] = []
    public private(set) var entries: [String: Entry] = [:]
    /// Whether the table was defined explicitly (header or inline), not just implied.
    var defined = false
    var isInline = false
    /// Whether the table was created by a dotted key (`a.b = 1` makes `a`): no header may
    /// define it afterwards.
    var dotted = false
    /// Keys whose arrays were made by `[[key]]` headers (the only arrays a header may extend).
    var tableArrays: Set<String> = []

    public init() {}

    public subscript(key: String) -> Entry? { entries[key] }

    mutating func set(_ key: String, _ entry: Entry) {
        if entries[key] == nil { keys.append(key) }
        entries[key] = entry
    }
}

/// A TOML syntax error at a line and column (both 1-based).
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String
    public var description: String { "line \(line), column \(column): \(message)" }
}

/// The deepest nesting of arrays and inline tables, and the most parts of a dotted key, that
/// the parser accepts: deeper input is an error, never a stack overflow.
public let tomlMaximumDepth = 100

/// Parses TOML 1.0 text into a table.
public func parseTOML(_ text: String) throws(TOMLError) -> TOMLTable {
    var scalars = Array(text.unicodeScalars)
    if scalars.first == "\u{FEFF}" { scalars.removeFirst() }  // a byte-order mark is allowed
    var parser = TOMLParser(scalars)
    return try parser.parseDocument()
}

private struct TOMLParser {
    let s: [Unicode.Scalar]
    var i = 0
    var line = 1
    var lineStart = 0
    var root = TOMLTable()
    /// Path of the current `[table]` or `[[array]]` element.
    var current: [PathStep] = []

    enum PathStep { case key(String), arrayElement(String) }
    /// Current nesting of arrays and inline tables.
    var depth = 0

    init(_ scalars: [Unicode.Scalar]) { s = scalars }

    var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }
    func peek(_ offset: Int) -> Unicode.Scalar? { i + offset < s.count ? s[i + offset] : nil }

    func error(_ message: String) -> TOMLError {
        TOMLError(line: line, column: i - lineStart + 1, message: message)
    }

    mutating func advance() {
        if s[i] == "\n" { line += 1; lineStart = i + 1 }
        i += 1
    }

    mutating func skipSpaces() { while let c = peek, c == " " || c == "\t" { advance() } }

    mutating func skipComment() throws(TOMLError) {
        guard peek == "#" else { return }
        while let c = peek, c != "\n" {
            if (c.value < 0x20 || c.value == 0x7F) && c != "\t" && !(c == "\r" && peek(1) == "\n") { throw error("control character in comment") }
            advance()
        }
    }

    /// Skips white space, newlines and comments (inside arrays).
    mutating func skipBlank() throws(TOMLError) {
        while true {
            skipSpaces()
            if peek == "#" { try skipComment() }
            if peek == "\n" || (peek == "\r" && peek(1) == "\n") { advance(); continue }
            return
        }
    }

    mutating func expectLineEnd() throws(TOMLError) {
        skipSpaces()
        try skipComment()
        if peek == "\r" && peek(1) == "\n" { advance() }
        if let c = peek {
            guard c == "\n" else { throw error("expected the end of the line, found '\(c)'") }
            advance()
        }
    }

    mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        while i < s.count {
            try skipBlank()
            guard let c = peek else { break }
            if c == "[" {
                try parseHeader()
            } else {
                let keyLine = line
                let key = try parseKey()
                skipSpaces()
                guard peek == "=" else { throw error("expected '=' after key '\(key.joined(separator: "."))'") }
                advance()
                skipSpaces()
                let value = try parseValue()
                try insert(path: current, key: key, value: value, line: keyLine)
                try expectLineEnd()
            }
        }
        return root
    }

    mutating func parseHeader() throws(TOMLError) {
        advance()
        let isArray = peek == "["
        if isArray { advance() }
        skipSpaces()
        let headerLine = line
        let key = try parseKey()
        skipSpaces()
        guard peek == "]" else { throw error("expected ']' to close the table header") }
        advance()
        if isArray {
            guard peek == "]" else { throw error("expected ']]' to close the array-of-tables header") }
            advance()
        }
        try expectLineEnd()
        let name = key.joined(separator: ".")
        let parentPath: [PathStep] = key.dropLast().map { .key($0) }
        guard let last = key.last else { throw error("empty table name") }
        var failure: TOMLError?
        modifyTable(at: parentPath, dottedFrom: nil, failure: &failure) { table, fail in
            if isArray {
                var items: [TOMLValue] = []
                if let existing = table[last] {
                    guard case .array(let a) = existing.value, table.tableArrays.contains(last) else {
                        fail = TOMLError(line: headerLine, column: 1, message: "'\(name)' is already defined as a value, not an array of tables")
                        return
                    }
                    items = a
                }
                var t = TOMLTable()
                t.defined = true
                items.append(.table(t))
                table.set(last, .init(value: .array(items), line: headerLine))
                table.tableArrays.insert(last)
            } else {
                if let existing = table[last] {
                    guard case .table(var t) = existing.value, !t.defined, !t.isInline, !t.dotted else {
                        fail = TOMLError(line: headerLine, column: 1, message: "table '\(name)' is defined twice")
                        return
                    }
                    t.defined = true
                    table.set(last, .init(value: .table(t), line: existing.line))
                } else {
                    var t = TOMLTable()
                    t.defined = true
                    table.set(last, .init(value: .table(t), line: headerLine))
                }
            }
        }
        if let failure { throw failure }
        current = parentPath + [isArray ? .arrayElement(last) : .key(last)]
    }

    /// Applies `body` to the table at `path`, creating implied tables on the way. Steps from
    /// index `dottedFrom` on come from a dotted key: they may not enter a table defined by a
    /// header or an array of tables, and the tables they create are marked dotted. The walk's
    /// recursion is bounded by ``tomlMaximumDepth`` (the length of a key).
    mutating func modifyTable(
        at path: [PathStep], dottedFrom: Int?, failure: inout TOMLError?,
        _ body: (inout TOMLTable, inout TOMLError?) -> Void
    ) {
        func walk(_ table: inout TOMLTable, _ rest: ArraySlice<PathStep>, _ line: Int, _ failure: inout TOMLError?) {
            guard let step = rest.first else { body(&table, &failure); return }
            let isDotted = dottedFrom.map { rest.startIndex >= $0 } ?? false
            switch step {
            case .key(let k):
                var child: TOMLTable
                var childLine = line
                if let existing = table[k] {
                    switch existing.value {
                    case .table(let t):
                        guard !t.isInline else {
                            failure = TOMLError(line: line, column: 1, message: "inline table '\(k)' cannot be extended")
                            return
                        }
                        guard !(isDotted && t.defined) else {
                            failure = TOMLError(line: line, column: 1, message: "table '\(k)' was defined by a header; a dotted key cannot add to it")
                            return
                        }
                        child = t
                        childLine = existing.line
                    case .array where isDotted:
                        failure = TOMLError(line: line, column: 1, message: "'\(k)' is an array; a dotted key cannot add to it")
                        return
                    case .array(var items):
                        // Dotted headers under [[x]] refer to its last element.
                        guard table.tableArrays.contains(k), case .table(var last)? = items.last else {
                            failure = TOMLError(line: line, column: 1, message: "'\(k)' is not a table")
                            return
                        }
                        walk(&last, rest.dropFirst(), line, &failure)
                        items[items.count - 1] = .table(last)
                        table.set(k, .init(value: .array(items), line: existing.line))
                        return
                    default:
                        failure = TOMLError(line: line, column: 1, message: "'\(k)' is already a \(existing.value.typeName), not a table")
                        return
                    }
                } else {
                    child = TOMLTable()
                    child.dotted = isDotted
                }
                walk(&child, rest.dropFirst(), line, &failure)
                table.set(k, .init(value: .table(child), line: childLine))
            case .arrayElement(let k):
                guard let existing = table[k], case .array(var items) = existing.value, case .table(var last)? = items.last else {
                    failure = TOMLError(line: line, column: 1, message: "'\(k)' is not an array of tables")
                    return
                }
                walk(&last, rest.dropFirst(), line, &failure)
                items[items.count - 1] = .table(last)
                table.set(k, .init(value: .array(items), line: existing.line))
            }
        }
        walk(&root, path[...], line, &failure)
    }

    mutating func insert(path: [PathStep], key: [String], value: TOMLValue, line keyLine: Int) throws(TOMLError) {
        var failure: TOMLError?
        let dotted: [PathStep] = key.dropLast().map { .key($0) }
        guard let last = key.last else { throw error("empty key") }
        let name = key.joined(separator: ".")
        modifyTable(at: path + dotted, dottedFrom: path.count, failure: &failure) { table, fail in
            if table[last] != nil {
                fail = TOMLError(line: keyLine, column: 1, message: "key '\(name)' is defined twice")
                return
            }
            table.set(last, .init(value: value, line: keyLine))
        }
        if let failure { throw failure }
    }

    mutating func parseKey() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            guard let c = peek else { throw error("expected a key") }
            if c == "\"" {
                parts.append(try parseBasicString())
            } else if c == "'" {
                parts.append(try parseLiteralString())
            } else {
                var bare = ""
                while let c = peek, isBareKeyCharacter(c) { bare.unicodeScalars.append(c); advance() }
                guard !bare.isEmpty else { throw error("invalid character '\(c)' in key") }
                parts.append(bare)
            }
            skipSpaces()
            guard peek == "." else { return parts }
            guard parts.count < tomlMaximumDepth else { throw error("key has more than \(tomlMaximumDepth) parts") }
            advance()
        }
    }

    func isBareKeyCharacter(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
    }

    mutating func parseValue() throws(TOMLError) -> TOMLValue {
        guard let c = peek else { throw error("expected a value") }
        if c == "[" || c == "{" {
            guard depth < tomlMaximumDepth else { throw error("arrays and inline tables nested more than \(tomlMaximumDepth) deep") }
            depth += 1
        }
        defer { if c == "[" || c == "{" { depth -= 1 } }
        switch c {
        case "\"":
            if peek(1) == "\"" && peek(2) == "\"" { return .string(try parseMultilineBasicString()) }
            return .string(try parseBasicString())
        case "'":
            if peek(1) == "'" && peek(2) == "'" { return .string(try parseMultilineLiteralString()) }
            return .string(try parseLiteralString())
        case "[": return try parseArray()
        case "{": return try parseInlineTable()
        default: return try parseScalar()
        }
    }

    mutating func parseArray() throws(TOMLError) -> TOMLValue {
        advance()
        var items: [TOMLValue] = []
        while true {
            try skipBlank()
            if peek == "]" { advance(); return .array(items) }
            items.append(try parseValue())
            try skipBlank()
            if peek == "," { advance(); continue }
            guard peek == "]" else { throw error("expected ',' or ']' in array") }
            advance()
            return .array(items)
        }
    }

    mutating func parseInlineTable() throws(TOMLError) -> TOMLValue {
        advance()
        let saved = (root, current)
        root = TOMLTable()
        current = []
        defer { (root, current) = saved }
        skipSpaces()
        if peek == "}" { advance(); var t = TOMLTable(); t.isInline = true; t.defined = true; return .table(t) }
        while true {
            skipSpaces()
            let keyLine = line
            let key = try parseKey()
            guard peek == "=" else { throw error("expected '=' in inline table") }
            advance()
            skipSpaces()
            let value = try parseValue()
            try insert(path: [], key: key, value: value, line: keyLine)
            skipSpaces()
            if peek == "," { advance(); continue }
            guard peek == "}" else { throw error("expected ',' or '}' in inline table (inline tables end on the same line)") }
            advance()
            var t = root
            t.isInline = true
            t.defined = true
            return .table(t)
        }
    }

    mutating func parseScalar() throws(TOMLError) -> TOMLValue {
        var token = ""
        while let c = peek, !(c == "," || c == "]" || c == "}" || c == "#" || c == "\n" || c == "\r") {
            // A space is allowed once inside a date-time ("1979-05-27 07:32:00").
            if c == " " || c == "\t" {
                let isDate = token.count == 10 && token.filter { $0 == "-" }.count == 2
                guard isDate, let n = peek(1), n >= "0" && n <= "9" else { break }
            }
            token.unicodeScalars.append(c)
            advance()
        }
        switch token {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        case "": throw error("expected a value")
        default: break
        }
        if token.contains(":") || (token.count >= 10 && token.dropFirst(4).first == "-" && token.first?.isNumber == true) {
            guard isValidTOMLDateTime(token) else { throw error("invalid date-time '\(token)'") }
            return .dateTime(token)
        }
        switch TOMLNumber.classify(token) {
        case .integer(let v): return .integer(v)
        case .float(let v): return .float(v)
        case .outOfRange: throw error("integer '\(token)' does not fit in 64 bits")
        case .invalid: throw error("invalid value '\(token)' (strings need quotes)")
        }
    }

    mutating func parseBasicString() throws(TOMLError) -> String { try parseSingleLineString(quote: "\"") }

    mutating func parseLiteralString() throws(TOMLError) -> String { try parseSingleLineString(quote: "'") }

    /// `"…"` (with escapes) or `'…'` (verbatim), on one line.
    mutating func parseSingleLineString(quote: Unicode.Scalar) throws(TOMLError) -> String {
        advance()
        var out = ""
        while true {
            guard let c = peek, c != "\n" else { throw error("unterminated string") }
            try checkStringCharacter(c, multiline: false)
            advance()
            if c == quote { return out }
            if quote == "\"" && c == "\\" { out.unicodeScalars.append(try parseEscape()) } else { out.unicodeScalars.append(c) }
        }
    }

    /// Control characters other than tab (and, in multi-line strings, newlines) must be escaped.
    func checkStringCharacter(_ c: Unicode.Scalar, multiline: Bool) throws(TOMLError) {
        guard c.value < 0x20 || c.value == 0x7F, c != "\t" else { return }
        if multiline && (c == "\n" || (c == "\r" && peek(1) == "\n")) { return }
        throw error("control character U+\(String(c.value, radix: 16, uppercase: true)) in a string must be escaped")
    }

    mutating func parseEscape() throws(TOMLError) -> Unicode.Scalar {
        guard let e = peek else { throw error("unterminated escape") }
        advance()
        switch e {
        case "b": return "\u{08}"
        case "t": return "\t"
        case "n": return "\n"
        case "f": return "\u{0C}"
        case "r": return "\r"
        case "\"": return "\""
        case "\\": return "\\"
        case "u", "U":
            let count = e == "u" ? 4 : 8
            var hex = ""
            for _ in 0..<count {
                guard let h = peek else { throw error("short unicode escape") }
                hex.unicodeScalars.append(h)
                advance()
            }
            guard let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else { throw error("invalid unicode escape \\\(e)\(hex)") }
            return scalar
        default:
            throw error("invalid escape '\\\(e)'")
        }
    }

    mutating func parseMultilineBasicString() throws(TOMLError) -> String { try parseMultilineString(quote: "\"") }

    mutating func parseMultilineLiteralString() throws(TOMLError) -> String { try parseMultilineString(quote: "'") }

    /// `"""…"""` (escapes, line-ending backslashes) or `'''…'''` (verbatim); a newline
    /// right after the opening delimiter is dropped; up to two quotes right before the closing
    /// delimiter belong to the content, a third is an error.
    mutating func parseMultilineString(quote: Unicode.Scalar) throws(TOMLError) -> String {
        let basic = quote == "\""
        advance(); advance(); advance()
        if peek == "\n" { advance() } else if peek == "\r" && peek(1) == "\n" { advance(); advance() }
        var out = ""
        while true {
            guard let c = peek else { throw error("unterminated multi-line string") }
            try checkStringCharacter(c, multiline: true)
            if c == quote && peek(1) == quote && peek(2) == quote {
                advance(); advance(); advance()
                var extra = 0
                while peek == quote {
                    guard extra < 2 else { throw error("too many quotes after the end of a multi-line string") }
                    out.unicodeScalars.append(quote)
                    advance()
                    extra += 1
                }
                return out
            }
            advance()
            guard basic, c == "\\" else {
                out.unicodeScalars.append(c)
                continue
            }
            // Line-ending backslash: skip the newline and following white space.
            var j = i
            while j < s.count && (s[j] == " " || s[j] == "\t") { j += 1 }
            if j < s.count && (s[j] == "\n" || s[j] == "\r") {
                while let w = peek, w == " " || w == "\t" || w == "\n" || w == "\r" { advance() }
                continue
            }
            out.unicodeScalars.append(try parseEscape())
        }
    }
}

/// TOML 1.0 number syntax, checked character by character (no leading zeros, underscores
/// only between digits, a digit on each side of `.`, 64-bit integers).
enum TOMLNumber: Equatable {
    case integer(Int)
    case float(Double)
    case outOfRange
    case invalid

    static func classify(_ token: String) -> TOMLNumber {
        let c = Array(token.unicodeScalars)
        func isDigit(_ s: Unicode.Scalar, radix: Int = 10) -> Bool {
            switch radix {
            case 16: return ("0"..."9").contains(s) || ("a"..."f").contains(s) || ("A"..."F").contains(s)
            case 8: return ("0"..."7").contains(s)
            case 2: return s == "0" || s == "1"
            default: return ("0"..."9").contains(s)
            }
        }
        /// Digits with single underscores between them, from `i`; returns the end index or nil.
        func digits(_ i: Int, radix: Int = 10) -> Int? {
            var j = i
            guard j < c.count, isDigit(c[j], radix: radix) else { return nil }
            j += 1
            while j < c.count {
                if isDigit(c[j], radix: radix) { j += 1; continue }
                if c[j] == "_", j + 1 < c.count, isDigit(c[j + 1], radix: radix) { j += 2; continue }
                break
            }
            return j
        }
        let clean = token.replacing("_", with: "")
        if c.count > 2, c[0] == "0", c[1] == "x" || c[1] == "o" || c[1] == "b" {
            let radix = c[1] == "x" ? 16 : c[1] == "o" ? 8 : 2
            guard digits(2, radix: radix) == c.count else { return .invalid }
            guard let v = Int(clean.dropFirst(2), radix: radix) else { return .outOfRange }
            return .integer(v)
        }
        var i = 0
        if i < c.count, c[i] == "+" || c[i] == "-" { i += 1 }
        let intStart = i
        guard let intEnd = digits(i) else { return .invalid }
        // No leading zeros in the integer part.
        if c[intStart] == "0" && intEnd - intStart > 1 { return .invalid }
        i = intEnd
        if i == c.count {
            guard let v = Int(clean) else { return .outOfRange }
            return .integer(v)
        }
        var isFloat = false
        if c[i] == "." {
            guard let end = digits(i + 1) else { return .invalid }
            i = end
            isFloat = true
        }
        if i < c.count, c[i] == "e" || c[i] == "E" {
            var j = i + 1
            if j < c.count, c[j] == "+" || c[j] == "-" { j += 1 }
            guard let end = digits(j) else { return .invalid }
            i = end
            isFloat = true
        }
        guard isFloat, i == c.count, let v = Double(clean) else { return .invalid }
        return .float(v)
    }
}

/// Whether `text` is a TOML 1.0 (RFC 3339) offset or local date-time, local date or local
/// time, with every field in range (days per month, leap years, seconds up to 60).
func isValidTOMLDateTime(_ text: String) -> Bool {
    let c = Array(text.unicodeScalars)
    var i = 0
    func number(_ width: Int) -> Int? {
        guard i + width <= c.count else { return nil }
        var v = 0
        for k in i..<(i + width) {
            guard ("0"..."9").contains(c[k]) else { return nil }
            v = v * 10 + Int(c[k].value - 48)
        }
        i += width
        return v
    }
    func expect(_ s: Unicode.Scalar) -> Bool {
        guard i < c.count, c[i] == s else { return false }
        i += 1
        return true
    }
    func time() -> Bool {
        guard let h = number(2), h <= 23, expect(":"), let m = number(2), m <= 59, expect(":"), let s = number(2), s <= 60 else { return false }
        if i < c.count, c[i] == "." {
            i += 1
            let start = i
            while i < c.count, ("0"..."9").contains(c[i]) { i += 1 }
            guard i > start else { return false }
        }
        return true
    }
    // A local time alone.
    if c.count >= 3, c[2] == ":" { return time() && i == c.count }
    guard let y = number(4), expect("-"), let mo = number(2), (1...12).contains(mo), expect("-"), let d = number(2) else { return false }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]
    guard (1...days).contains(d) else { return false }
    if i == c.count { return true }
    guard c[i] == "T" || c[i] == "t" || c[i] == " " else { return false }
    i += 1
    guard time() else { return false }
    if i == c.count { return true }
    if c[i] == "Z" || c[i] == "z" { return i + 1 == c.count }
    guard c[i] == "+" || c[i] == "-" else { return false }
    i += 1
    guard let oh = number(2), oh <= 23, expect(":"), let om = number(2), om <= 59 else { return false }
    return i == c.count
}
