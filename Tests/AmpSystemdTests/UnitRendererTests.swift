import AmpRegistry
import AmpSystemd
import Testing

@Suite("unit rendering (pure)")
struct UnitRendererTests {
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
