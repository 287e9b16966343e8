#if canImport(Glibc)
import Glibc
#endif
import AmpRegistry
import Testing

@Suite("Registry (pure)")
struct RegistryTests {
    @Test func instanceNames() {
        for good in ["shop", "my-app", "a.b_c", "X1"] { #expect(isValidInstanceName(good), "\(good)") }
        for bad in ["", "-x", ".x", "a b", "a:b", "a\\b", "ä", "a/b", String(repeating: "a", count: 65)] {
            #expect(!isValidInstanceName(bad), "\(bad)")
        }
        #expect(suggestedInstanceName(forBase: "/home/me/My App") == "My-App")
        #expect(suggestedInstanceName(forBase: "/srv/.hidden") == "hidden")
        #expect(suggestedInstanceName(forBase: "/") == "root")
    }

    @Test func parsesEntries() throws {
        let ok = Registry.parse(path: "/r/shop.toml", name: "shop", text: "path = \"/srv/shop/\"\nautostart = true\n")
        let entry = try ok.get()
        #expect(entry == RegistryEntry(name: "shop", base: "/srv/shop", autostart: true, file: "/r/shop.toml"))
        #expect((try Registry.parse(path: "/r/a.toml", name: "a", text: "path = \"/a\"").get()).autostart == false)
    }

    @Test(arguments: [
        ("bad name", "-x", "path = \"/a\"", "not a valid amp name"),
        ("unreadable", "a", nil, "cannot be read"),
        ("not TOML", "a", "path = ", "line 1"),
        ("no path", "a", "autostart = true", "no `path"),
        ("path not a string", "a", "path = 3", "path must be a string"),
        ("relative path", "a", "path = \"src/a\"", "not an absolute path"),
        ("quote in path", "a", "path = \"/a\\\"b\"", "quote or backslash"),
        ("autostart not bool", "a", "path = \"/a\"\nautostart = \"yes\"", "line 2: autostart must be true or false"),
    ] as [(String, String, String?, String)])
    func rejectsBadEntries(_ what: String, _ name: String, _ text: String?, _ expected: String) {
        let result = Registry.parse(path: "/r/\(name).toml", name: name, text: text)
        guard case .failure(let problem) = result else {
            Issue.record("\(what): accepted")
            return
        }
        #expect(problem.description.contains(expected), "\(what): \(problem)")
        #expect(problem.description.hasPrefix("/r/\(name).toml: "), "names the file")
    }
}
