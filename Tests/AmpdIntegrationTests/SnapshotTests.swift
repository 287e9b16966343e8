#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing
import Varlink

@Suite("snapshots (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct SnapshotTests {
    @Test("create, list, restore (connections ended, data back, the server answering again), refused restore of another version, delete")
    func snapshots() async throws {
        let f = AmpdFixture()
        let ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        let url = try #require(ampd.url)
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"])
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }

        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)")
        let created = await ampctl(["snapshot", "create", "before", "--json"])
        #expect(created.ok, "\(created.output)")
        let json = try JSONParser.parse(String(created.output.split(separator: "\n").filter { !$0.hasPrefix("ampctl:") }.joined(separator: "\n"))).objectValue
        #expect(json?["name"] == .string("before") && json?["postgres_version"] == .string("15"), "\(created.output)")
        #expect((json?["size_bytes"]?.intValue ?? 0) > 1_000_000)
        #expect(access(f.ampDir + "/snapshots/before/manifest", F_OK) == 0)
        #expect(try LibPQ.query(url, "SELECT count(*) FROM t").first == "100", "answering again after the snapshot")

        _ = try LibPQ.rows(url, "DELETE FROM t WHERE n > 10; CREATE TABLE later (x int)")
        let session = try LibPQConnection(url)
        let again = await ampctl(["snapshot", "create", "before"])
        #expect(again.status == .exited(65) && again.output.contains("exists already"), "\(again.output)")
        let list = await ampctl(["snapshot", "list"])
        #expect(list.output.contains("before"), "\(list.output)")

        let unconfirmed = await ampctl(["snapshot", "restore", "before"])
        #expect(unconfirmed.status == .exited(64), "\(unconfirmed.output)")
        let restore = await ampctl(["snapshot", "restore", "before", "--yes"])
        #expect(restore.ok, "\(restore.output)")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM t").first == "100", "the snapshot's data")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM pg_class WHERE relname = 'later'").first == "0")
        #expect((try? session.rows("SELECT 1")) == nil, "the open session was ended")
        #expect(!listDirectory(f.ampDir).contains { $0.hasPrefix(".before-restore") || $0.hasPrefix(".restore-") }, "nothing left aside")
        let status = try JSONParser.parse(await ampctl(["status", "--json"]).output).objectValue
        #expect(status?["state"] == .string("ready"), "\(String(describing: status))")

        // A snapshot of another major version is refused before anything stops.
        writeFile(f.ampDir + "/snapshots/before/manifest", (readFile(f.ampDir + "/snapshots/before/manifest") ?? "").replacing("postgres_version=15", with: "postgres_version=18"))
        let other = await ampctl(["snapshot", "restore", "before", "--yes"])
        #expect(other.status == .exited(65) && other.output.contains("PostgreSQL 18"), "\(other.output)")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM t").first == "100")

        let delete = await ampctl(["snapshot", "delete", "before", "--yes"])
        #expect(delete.ok, "\(delete.output)")
        #expect(access(f.ampDir + "/snapshots/before", F_OK) != 0)
        let missing = await ampctl(["snapshot", "restore", "before", "--yes"])
        #expect(missing.status == .exited(65) && missing.output.contains("does not exist"), "\(missing.output)")
        #expect(!ampd.text.contains("exited unexpectedly"), "no restart loop: \(ampd.text)")
    }
}
