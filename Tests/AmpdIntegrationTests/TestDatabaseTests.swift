#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing

@Suite("ampctl testdb and AcquireTestDatabase (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct TestDatabaseTests {
    @Test("each run gets its own clone, pooled after the first; a migrated template is never stale; 8 at once; dropped after, also on a signal; leftovers go at the next start")
    func throwawayDatabases() async throws {
        let f = AmpdFixture()
        var ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        let local = try #require(ampd.url)
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1", "PATH": "/usr/bin:/bin"])
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }
        func testDatabases() throws -> [String] {
            try LibPQ.query(local, "SELECT datname FROM pg_database WHERE datname LIKE 'amp\\_testdb\\_%' ORDER BY 1").compactMap { $0 }
        }
        #expect(await ampctl(["createdb", "app"]).ok)
        let app = local.replacing("postgresql:///postgres?", with: "postgresql:///app?")
        _ = try LibPQ.rows(app, "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)")

        let first = await ampctl(["testdb", "--template", "app", "--", "sh", "-c", "psql -Atc 'SELECT current_database(), count(*) FROM t'"])
        #expect(first.ok, "\(first.output)")
        #expect(first.output.contains("amp_testdb_") && first.output.contains("|2"), "\(first.output)")

        // The pool fills in the background; then a clone is handed out without CREATE DATABASE.
        #expect(await eventually(timeout: .seconds(20)) { ((try? testDatabases()) ?? []).count >= 2 }, "the pool filled")
        let second = await ampctl(["testdb", "--template", "app", "--", "sh", "-c", "psql -Atc 'SELECT count(*) FROM t' && test \"$PGDATABASE\" != app"])
        #expect(second.ok && second.output.contains("made ahead of time"), "\(second.output)")

        // A migration on the template: the next database has it.
        _ = try LibPQ.rows(app, "ALTER TABLE t ADD COLUMN label text; INSERT INTO t VALUES (3, 'new')")
        let migrated = await ampctl(["testdb", "--template", "app", "--", "sh", "-c", "psql -Atc 'SELECT count(*), count(label) FROM t'"])
        #expect(migrated.ok && migrated.output.contains("3|1"), "never a stale clone: \(migrated.output)")

        // 8 at once, each its own database.
        let names = await withTaskGroup(of: String.self) { group in
            for _ in 0..<8 {
                group.addTask { await ampctl(["testdb", "--template", "app", "--", "sh", "-c", "psql -Atc 'SELECT current_database()'; sleep 0.3"]).output }
            }
            var out: [String] = []
            for await o in group { out.append(o.split(separator: "\n").last { $0.hasPrefix("amp_testdb_") }.map(String.init) ?? o) }
            return out
        }
        #expect(Set(names).count == 8 && names.allSatisfy { $0.hasPrefix("amp_testdb_") }, "\(names)")

        // Exit status carried; the database gone afterwards (only the pool remains).
        let failing = await ampctl(["testdb", "--template", "app", "--", "sh", "-c", "echo $PGDATABASE > \(f.base)/name; exit 7"])
        #expect(failing.status == .exited(7), "\(failing.output)")
        let used = (readFile(f.base + "/name") ?? "").trimmingWhitespace
        #expect(await eventually(timeout: .seconds(10)) { !((try? testDatabases()) ?? []).contains(used) }, "\(used) dropped")

        // ampctl killed (SIGKILL): ampd drops the database when the call's connection closes.
        let killed = try await f.start(["testdb", "--template", "app", "--", "sh", "-c", "echo $PGDATABASE; sleep 30"], executable: ampctlPath)
        try #require(await eventually(timeout: .seconds(20)) { killed.lines.contains { $0.hasPrefix("amp_testdb_") } }, "\(killed.text)")
        let held = killed.lines.first { $0.hasPrefix("amp_testdb_") } ?? ""
        #expect(((try? testDatabases()) ?? []).contains(held))
        killed.process?.signal(SIGKILL)
        #expect(await eventually(timeout: .seconds(10)) { !((try? testDatabases()) ?? []).contains(held) }, "dropped after the client died")

        // ampd killed: its test databases (the pool) are dropped at the next start, a user's database is not.
        _ = try LibPQ.rows(local, "CREATE DATABASE amp_testdbx_keep")
        ampd.process?.signal(SIGKILL)
        _ = await ampd.process?.wait(timeout: .seconds(10))
        #expect(await eventually(timeout: .seconds(15)) { access(f.metadb + "/postmaster.pid", F_OK) != 0 || true })
        ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        #expect(await eventually(timeout: .seconds(20)) { ((try? testDatabases()) ?? []).isEmpty }, "leftovers dropped: \((try? testDatabases()) ?? [])")
        #expect(try LibPQ.query(local, "SELECT count(*) FROM pg_database WHERE datname = 'amp_testdbx_keep'").first == "1", "only amp's own")
        ampd.process?.signal(SIGTERM)
        _ = await ampd.process?.wait(timeout: .seconds(30))
    }

    @Test("ampd's own sessions never block a clone of the default database: after the pool ran, createdb --from postgres, testdb with the default template and a second pool all succeed")
    func ownSessionsNeverBlockClones() async throws {
        let f = AmpdFixture()
        let ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1", "PATH": "/usr/bin:/bin"])
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }
        #expect(await ampctl(["createdb", "tpl"]).ok)
        let pooled = await ampctl(["testdb", "--template", "tpl", "--", "true"])
        #expect(pooled.ok, "\(pooled.output)")
        // The pool refills in the background, on connections to the default database.
        try await Task.sleep(for: .seconds(2))
        for round in 1...3 {
            let copy = await ampctl(["createdb", "copy\(round)", "--from", "postgres"])
            #expect(copy.ok, "round \(round): \(copy.output)")
            let fresh = await ampctl(["testdb", "--", "true"])
            #expect(fresh.ok, "round \(round): \(fresh.output)")
            let again = await ampctl(["testdb", "--template", "tpl", "--", "true"])
            #expect(again.ok, "round \(round): \(again.output)")
        }
        await ampd.stop()
    }
}
