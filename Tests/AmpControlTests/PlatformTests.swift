#if canImport(Glibc)
import Glibc
#endif
import SystemSupport
import Testing
@testable import AmpControl

@Suite("ampctl reads the platform through one injected value")
struct PlatformTests {
    func scratch() throws -> String {
        var template = Array("/tmp/amp-platform.XXXXXX".utf8CString)
        let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { $0.baseAddress.flatMap { mkdtemp($0) } }
        return String(cString: try #require(made))
    }

    @Test("the project of the working directory, and ages, follow the injected platform, not the process's")
    func injected() async throws {
        let base = try scratch()
        defer { _ = try? removeTree(base) }
        try makeDirectories(base + "/.amp/metadb")
        try makeDirectories(base + "/src/deeper")
        try makeDirectories(base + "/.amp/.before-reset-1")
        let platform = Platform(environment: ["HOME": base, "XDG_RUNTIME_DIR": base + "/run"], workingDirectory: base + "/src/deeper",
                                now: { Int(time(nil)) + 7200 })
        try Platform.$current.withValue(platform) {
            let project = try resolveProject(nil, address: nil, environment: Platform.current.environment)
            #expect(project.base == base && !project.registered, "\(project.base)")
            let usage = ProjectUsage.measure(name: "p", base: base)
            #expect(usage.leftovers.first.map { $0.ageSeconds >= 7200 } == true, "the injected clock: \(usage.leftovers.map(\.ageSeconds))")
        }
        #expect(Platform.current.workingDirectory != base + "/src/deeper", "the process's own is untouched")
    }
}
