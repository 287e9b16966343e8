#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import SystemSupport
import Foundation
import Testing

/// The toml-test suite's TOML 1.0.0 cases (vendored in `toml-test/`): every valid case parses
/// to the value its JSON gives, every invalid case is refused (as `config.toml` would be: bytes
/// that are not UTF-8 are refused before parsing).
@Suite("toml-test suite (TOML 1.0.0)")
struct TOMLSuiteTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("toml-test").path

    static var cases: [String] {
        (try? String(contentsOfFile: root + "/files-toml-1.0.0", encoding: .utf8))?
            .split(separator: "\n").map(String.init).filter { $0.hasSuffix(".toml") } ?? []
    }

    /// Parses a case's bytes as amp reads config.toml: strict UTF-8, then TOML.
    enum Outcome { case parsed(TOMLTable), refused(String) }

    static func parse(_ relative: String) -> Outcome {
        guard let data = FileManager.default.contents(atPath: root + "/" + relative) else { return .refused("unreadable") }
        switch decodeUTF8Strictly(Array(data)) {
        case .failure: return .refused("not UTF-8")
        case .success(let text):
            do { return .parsed(try parseTOML(text)) } catch { return .refused(error.description) }
        }
    }

    @Test("the suite is present")
    func present() {
        #expect(Self.cases.filter { $0.hasPrefix("valid/") }.count >= 200)
        #expect(Self.cases.filter { $0.hasPrefix("invalid/") }.count >= 450)
    }

    @Test("every valid case parses to its JSON")
    func valid() throws {
        var failures: [String] = []
        let cases = Self.cases.filter { $0.hasPrefix("valid/") }
        for c in cases {
            switch Self.parse(c) {
            case .refused(let why): failures.append("\(c): \(why)")
            case .parsed(let table):
                let jsonPath = Self.root + "/" + c.dropLast(5) + ".json"
                guard let data = FileManager.default.contents(atPath: jsonPath),
                      let expected = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
                    failures.append("\(c): no JSON"); continue
                }
                if let difference = Self.compare(.table(table), expected, path: "") { failures.append("\(c): \(difference)") }
            }
        }
        print("toml-test valid: \(cases.count - failures.count) of \(cases.count) pass")
        #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.joined(separator: "\n"))")
    }

    @Test("every invalid case is refused")
    func invalid() {
        let cases = Self.cases.filter { $0.hasPrefix("invalid/") }
        var accepted: [String] = []
        for c in cases {
            if case .parsed = Self.parse(c) { accepted.append(c) }
        }
        print("toml-test invalid: \(cases.count - accepted.count) of \(cases.count) refused")
        #expect(accepted.isEmpty, "\(accepted.count) accepted:\n\(accepted.joined(separator: "\n"))")
    }

    /// nil when `value` matches the toml-test JSON encoding `expected`, else the difference.
    static func compare(_ value: TOMLValue, _ expected: Any, path: String) -> String? {
        switch value {
        case .table(let t):
            guard let object = expected as? [String: Any] else { return "\(path): table, expected \(expected)" }
            guard Set(t.keys) == Set(object.keys) else { return "\(path): keys \(t.keys.sorted()) vs \(object.keys.sorted())" }
            for k in t.keys {
                guard let e = t[k], let x = object[k] else { continue }
                if let d = compare(e.value, x, path: path + "." + k) { return d }
            }
            return nil
        case .array(let items):
            guard let array = expected as? [Any], array.count == items.count else { return "\(path): array of \(items.count), expected \(expected)" }
            for (i, (a, b)) in zip(items, array).enumerated() {
                if let d = compare(a, b, path: path + "[\(i)]") { return d }
            }
            return nil
        default:
            guard let tagged = expected as? [String: Any], let type = tagged["type"] as? String, let text = tagged["value"] as? String else {
                return "\(path): \(value), expected \(expected)"
            }
            switch (value, type) {
            case (.string(let s), "string"): return s == text ? nil : "\(path): \(s.debugDescription) vs \(text.debugDescription)"
            case (.integer(let n), "integer"): return Int(text) == n ? nil : "\(path): \(n) vs \(text)"
            case (.boolean(let b), "bool"): return "\(b)" == text ? nil : "\(path): \(b) vs \(text)"
            case (.float(let d), "float"):
                if d.isNaN { return text.hasSuffix("nan") ? nil : "\(path): nan vs \(text)" }
                let e: Double? = text == "inf" || text == "+inf" ? .infinity : text == "-inf" ? -.infinity : Double(text)
                guard let e else { return "\(path): unparsable \(text)" }
                return d == e ? nil : "\(path): \(d) vs \(text)"
            case (.dateTime(let s), "datetime"), (.dateTime(let s), "datetime-local"), (.dateTime(let s), "date-local"), (.dateTime(let s), "time-local"):
                return normalise(s) == normalise(text) ? nil : "\(path): \(s) vs \(text)"
            default: return "\(path): \(value.typeName) vs \(type) \(text)"
            }
        }
    }

    /// Date-times compared the way RFC 3339 means them: `T`/`t`/space alike, `z` as `Z`,
    /// seconds present, fractional zeros ignored.
    static func normalise(_ s: String) -> String {
        var t = s.uppercased().replacingOccurrences(of: " ", with: "T")
        // 07:32 (TOML 1.1 omits seconds) → 07:32:00 is not TOML 1.0; leave as is.
        if let dot = t.firstIndex(of: ".") {
            var end = t.index(after: dot)
            while end < t.endIndex, t[end].isNumber { end = t.index(after: end) }
            var fraction = String(t[t.index(after: dot)..<end])
            while fraction.hasSuffix("0") { fraction.removeLast() }
            t = String(t[..<dot]) + (fraction.isEmpty ? "" : "." + fraction) + String(t[end...])
        }
        return t
    }
}
