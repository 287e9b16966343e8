import AmpConfig
import Testing

@Suite("TOML parser")
struct TOMLTests {
    @Test("values of every type, tables, dotted keys and arrays of tables")
    func parsesDocument() throws {
        let doc = try parseTOML("""
            # comment
            title = "amp"   # trailing comment
            literal = 'C:\\path'
            count = 1_000
            hex = 0xff
            neg = -17
            pi = 3.14
            exp = 1e3
            on = true
            when = 1979-05-27T07:32:00Z
            list = [1, 2,
              3, # comment in array
            ]
            nested.key = "dotted"
            inline = { a = 1, b.c = "x" }
            multi = \"\"\"
            line one
            line two\"\"\"
            folded = \"\"\"\\
                 joined \\
                 words\"\"\"
            raw = '''
            no \\escapes'''
            esc = "tab\\tquote\\"u\\u00e9"

            [postgres]
            locale = "C"
            [postgres.parameters]
            work_mem = "8MB"

            [[servers]]
            name = "a"
            [[servers]]
            name = "b"
            """)
        #expect(doc["title"]?.value == .string("amp"))
        #expect(doc["literal"]?.value == .string("C:\\path"))
        #expect(doc["count"]?.value == .integer(1000))
        #expect(doc["hex"]?.value == .integer(255))
        #expect(doc["neg"]?.value == .integer(-17))
        #expect(doc["pi"]?.value == .float(3.14))
        #expect(doc["exp"]?.value == .float(1000))
        #expect(doc["on"]?.value == .boolean(true))
        #expect(doc["when"]?.value == .dateTime("1979-05-27T07:32:00Z"))
        #expect(doc["list"]?.value == .array([.integer(1), .integer(2), .integer(3)]))
        guard case .table(let nested)? = doc["nested"]?.value else { Issue.record("nested is not a table"); return }
        #expect(nested["key"]?.value == .string("dotted"))
        guard case .table(let inline)? = doc["inline"]?.value, case .table(let b)? = inline["b"]?.value else {
            Issue.record("inline table"); return
        }
        #expect(inline["a"]?.value == .integer(1))
        #expect(b["c"]?.value == .string("x"))
        #expect(doc["multi"]?.value == .string("line one\nline two"))
        #expect(doc["folded"]?.value == .string("joined words"))
        #expect(doc["raw"]?.value == .string("no \\escapes"))
        #expect(doc["esc"]?.value == .string("tab\tquote\"u\u{e9}"))
        guard case .table(let pg)? = doc["postgres"]?.value, case .table(let params)? = pg["parameters"]?.value else {
            Issue.record("postgres table"); return
        }
        #expect(pg["locale"]?.line == 27)
        #expect(params["work_mem"]?.value == .string("8MB"))
        #expect(params["work_mem"]?.line == 29)
        guard case .array(let servers)? = doc["servers"]?.value else { Issue.record("servers"); return }
        #expect(servers.count == 2)
    }

    @Test("syntax errors name the line", arguments: [
        ("a = 1\nb = \n", 2),
        ("a = 1\na = 2\n", 2),
        ("[t]\nx = 1\n[t]\n", 3),
        ("ok = true\nbad = yes\n", 2),
        ("s = \"unterminated\n", 1),
        ("x = 1 2\n", 1),
        ("x = [1, 2\n", 2),
        ("x = 007\n", 1),
        ("k = \"\\q\"\n", 1),
    ])
    func errorsHaveLines(text: String, line: Int) {
        #expect(throws: TOMLError.self) { try parseTOML(text) }
        do {
            _ = try parseTOML(text)
        } catch {
            #expect(error.line == line, "\(error)")
        }
    }

    @Test("a key defined as a value cannot become a table")
    func valueThenTable() {
        #expect(throws: TOMLError.self) { try parseTOML("a = 1\n[a]\nb = 2\n") }
        #expect(throws: TOMLError.self) { try parseTOML("a = {x = 1}\na.y = 2\n") }
    }
}
