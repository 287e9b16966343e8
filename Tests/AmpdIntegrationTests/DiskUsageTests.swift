#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing
import Varlink

@Suite("ampctl du / gc (built binaries, a registry of several projects)", .serialized, unprivileged)
struct DiskUsageTests {
    @Test("du lists every project and the template cache; gc removes stale templates and old rollback copies only")
    func duAndGc() async throws {
        let f = AmpdFixture()
        let config = f.base + "/config", cache = f.base + "/cache"
        try makeDirectories(config + "/amp/registry")
        var env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "XDG_CONFIG_HOME": config, "XDG_CACHE_HOME": cache, "NO_COLOR": "1"])
        env["HOME"] = f.base
        func ampctl(_ args: [String]) async -> ToolResult { await runIn("/", ampctlPath, args, environment: env) }

        // Two registered projects, each with a cluster made through the template cache.
        for name in ["alpha", "beta"] {
            let base = f.base + "/" + name
            try makeDirectories(base)
            writeFile(config + "/amp/registry/\(name).toml", "path = \"\(base)\"\nautostart = false\n")
            let run = try await f.start(["run", "--amp-dir", base], environment: ["XDG_CACHE_HOME": cache])
            try #require(await run.waitForLine("ready in ", timeout: .seconds(90)), "\(run.text)")
            run.process?.signal(SIGTERM)
            _ = await run.process?.wait(timeout: .seconds(30))
        }
        try makeDirectories(f.base + "/alpha/.amp/rollback/metadb-14")
        writeFile(f.base + "/alpha/.amp/rollback/metadb-14/PG_VERSION", "14\n")
        var old = [timespec(tv_sec: time(nil) - 40 * 86_400, tv_nsec: 0), timespec(tv_sec: time(nil) - 40 * 86_400, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, f.base + "/alpha/.amp/rollback/metadb-14", &old, 0) == 0)
        try makeDirectories(cache + "/amp/templates/pg15-0000000000000000/data")
        writeFile(cache + "/amp/templates/pg15-0000000000000000/origin", "/nonexistent/bin/postgres 1 1\n")

        let du = await ampctl(["du", "--json"])
        #expect(du.ok, "\(du.output)")
        let json = try JSONParser.parse(du.output).objectValue
        let projects = json?["projects"]?.arrayValue ?? []
        #expect(projects.compactMap { $0.objectValue?["name"]?.stringValue }.sorted() == ["alpha", "beta"], "\(du.output)")
        #expect(projects.allSatisfy { ($0.objectValue?["cluster_bytes"]?.intValue ?? 0) > 1_000_000 }, "\(du.output)")
        let templates = json?["templates"]?.arrayValue ?? []
        #expect(templates.contains { $0.objectValue?["current"] == .bool(true) }, "the template in use is current: \(du.output)")
        #expect(templates.contains { $0.objectValue?["key"]?.stringValue == "pg15-0000000000000000" && $0.objectValue?["current"] == .bool(false) })

        let dry = await ampctl(["gc", "--dry-run"])
        #expect(dry.ok, "\(dry.output)")
        #expect(dry.output.contains("pg15-0000000000000000") && dry.output.contains("metadb-14"), "\(dry.output)")
        #expect(access(cache + "/amp/templates/pg15-0000000000000000", F_OK) == 0, "--dry-run removes nothing")
        let younger = await ampctl(["gc", "--dry-run", "--older-than", "60"])
        #expect(!younger.output.contains("metadb-14"), "\(younger.output)")
        let unconfirmed = await ampctl(["gc"])
        #expect(unconfirmed.status == .exited(64), "asks first: \(unconfirmed.output)")
        let gc = await ampctl(["gc", "--yes"])
        #expect(gc.ok, "\(gc.output)")
        #expect(access(cache + "/amp/templates/pg15-0000000000000000", F_OK) != 0)
        #expect(access(f.base + "/alpha/.amp/rollback/metadb-14", F_OK) != 0)
        let after = await ampctl(["du", "--json"])
        let left = (try JSONParser.parse(after.output).objectValue?["templates"]?.arrayValue) ?? []
        #expect(!left.isEmpty && left.allSatisfy { $0.objectValue?["current"] == .bool(true) }, "the current template stays: \(after.output)")
    }
}
