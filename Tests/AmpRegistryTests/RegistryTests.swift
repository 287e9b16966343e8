#if canImport(Glibc)
import Glibc
#endif
import AmpRegistry
import Testing

@Suite("Registry and unit rendering (pure)")
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

    @Test func rendersDropInAndAutostartLink() {
        let renderer = UnitRenderer(templatePath: "/usr/lib/systemd/user/amp@.service", writer: "test")
        let files = renderer.render(RegistryEntry(name: "shop", base: "/srv/my shop 100%", autostart: true, file: "/r/shop.toml"))
        #expect(files.map(\.path) == ["amp@shop.service.d/50-amp-dir.conf", "default.target.wants/amp@shop.service"])
        guard case .text(let text) = files[0].content else { Issue.record("drop-in is not text"); return }
        #expect(text.hasPrefix(UnitRenderer.headerMarker))
        #expect(text.contains("Environment=\"AMP_DIR=/srv/my shop 100%%\""))
        #expect(text.contains("RequiresMountsFor=\"/srv/my shop 100%%\""))
        #expect(text.contains("ConditionPathIsDirectory=/srv/my shop 100%%\n"))
        #expect(files[1].content == .symlink(target: "/usr/lib/systemd/user/amp@.service"))
        #expect(renderer.render(RegistryEntry(name: "x", base: "/x")).count == 1, "no link without autostart")
    }
}
