#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Testing

@Suite("ampctl createdb --from (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct CloneTests {
    @Test("a clone has the source's data; other sessions on the source are named, and --force ends them; postgres itself can be cloned")
    func cloneDatabase() async throws {
        let f = AmpdFixture()
        let ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        let local = try #require(ampd.url)
        func url(_ db: String) -> String { local.replacing("postgresql:///postgres?", with: "postgresql:///\(db)?") }
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"])
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }

        #expect(await ampctl(["createdb", "app"]).ok)
        _ = try LibPQ.rows(url("app"), "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)")
        let clone = await ampctl(["createdb", "app_copy", "--from", "app"])
        #expect(clone.ok && clone.output.contains("as a copy of app"), "\(clone.output)")
        #expect(try LibPQ.query(url("app_copy"), "SELECT count(*) FROM t").first == "1000")

        // A session on the source blocks the copy: the error names it.
        let held = try LibPQConnection(url("app") + "&application_name=held-open")
        let pid = try #require(try held.rows("SELECT pg_backend_pid()").first?.first ?? nil)
        let blocked = await ampctl(["createdb", "app_copy2", "--from", "app"])
        #expect(blocked.status == .exited(65), "\(blocked.output)")
        #expect(blocked.output.contains("PID \(pid)") && blocked.output.contains("held-open") && blocked.output.contains("--force"), "\(blocked.output)")
        let forced = await ampctl(["createdb", "app_copy2", "--from", "app", "--force"])
        #expect(forced.ok, "\(forced.output)")
        #expect(!held.isOpen || (try? held.rows("SELECT 1")) == nil, "the other session was ended")

        // ampd's own kept session (status, database list) does not block cloning postgres.
        #expect(await ampctl(["status"]).ok)
        let fromPostgres = await ampctl(["createdb", "pgcopy", "--from", "postgres"])
        #expect(fromPostgres.ok, "\(fromPostgres.output)")
        let missing = await ampctl(["createdb", "x", "--from", "nope"])
        #expect(missing.status == .exited(65) && missing.output.contains("nope"), "\(missing.output)")
    }
}
