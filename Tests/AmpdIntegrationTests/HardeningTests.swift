#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import ChildProcess
import SystemSupport
import Testing

/// What trying to break amp found (issue 23), one test per hole, each failing before its fix:
/// seeds outside the project or that never end, runtime directories others can write,
/// reserved database names, interrupted imports, passwords in messages, and the smaller ones.
/// Built binaries, real PostgreSQL. (Root and two-account attacks: Tests/harness/root-smoke.sh
/// and the fault suite's `two-accounts`.)
@Suite("hardening: seeds, runtime directories, reserved names, interrupted imports (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct HardeningTests {
    func ampctl(_ f: AmpdFixture, _ args: [String], runtime: String? = nil) async -> ToolResult {
        await runIn(f.base, ampctlPath, args, environment: toolEnvironment(["XDG_RUNTIME_DIR": runtime ?? f.runtimeDirectory, "NO_COLOR": "1"]))
    }

    func exitCode(_ r: ToolResult) -> Int32? { if case .exited(let c)? = r.status { return c }; return nil }



    func configure(_ f: AmpdFixture, _ text: String) throws {
        try makeDirectories(f.ampDir)
        writeFile(f.ampDir + "/config.toml", text)
    }

    @Test("a seed outside the project is refused (in the file, and through a symbolic link) unless seed_outside_project = true")
    func seedOutsideProject() async throws {
        let f = AmpdFixture()
        let outside = AmpdFixture()
        writeFile(outside.base + "/elsewhere.sql", "CREATE TABLE elsewhere (n int);\n")
        try configure(f, "[postgres]\nseed = [\"\(outside.base)/elsewhere.sql\"]\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(78) && text.contains("outside the project directory") && text.contains("seed_outside_project = true"), "\(text)")
        #expect(access(f.metadb + "/PG_VERSION", F_OK) != 0, "nothing made")

        // A link inside the project that leads outside: refused when the scripts run.
        try makeDirectories(f.base + "/db")
        #expect(symlink(outside.base + "/elsewhere.sql", f.base + "/db/seed.sql") == 0)
        try configure(f, "[postgres]\nseed = [\"db/seed.sql\"]\n")
        let (linked, linkedLines) = try await f.runToEnd(["run", "--amp-dir", f.base], timeout: .seconds(90))
        let linkedText = linkedLines.joined(separator: "\n")
        #expect(linked == .exited(65) && linkedText.contains("resolves to \(outside.base)/elsewhere.sql, outside the project"), "\(linkedText)")

        try configure(f, "[postgres]\nseed = [\"db/seed.sql\"]\nseed_outside_project = true\n")
        let run = try await f.ready()
        #expect(try LibPQ.query(try #require(run.url), "SELECT count(*) FROM elsewhere").first == "0", "allowed explicitly")
        await run.stop()
    }

    @Test("a seed that never ends is bounded by start_timeout, and a stop request ends it at once (it held ampd for minutes)")
    func hangingSeed() async throws {
        let f = AmpdFixture()
        try makeDirectories(f.base + "/db")
        writeFile(f.base + "/db/seed.sql", "SELECT pg_sleep(600);\n")
        try configure(f, "[postgres]\nseed = [\"db/seed.sql\"]\nstart_timeout = \"8s\"\n")
        let began = ContinuousClock.now
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base], timeout: .seconds(60))
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(65) && text.contains("did not finish within the start timeout"), "\(text)")
        #expect(ContinuousClock.now - began < .seconds(40), "bounded by the start timeout")
        #expect(access(f.metadb + "/PG_VERSION", F_OK) != 0, "the half-seeded cluster is removed")

        // /dev/zero (psql spun on it) is not a script at all.
        try configure(f, "[postgres]\nseed = [\"/dev/zero\"]\nseed_outside_project = true\n")
        let (zero, zeroLines) = try await f.runToEnd(["run", "--amp-dir", f.base], timeout: .seconds(90))
        #expect(zero == .exited(65) && zeroLines.joined(separator: "\n").contains("not a regular file"), "\(zeroLines)")

        try configure(f, "[postgres]\nseed = [\"db/seed.sql\"]\n")
        let run = try await f.start(["run", "--amp-dir", f.base])
        try #require(await run.waitForLine("running seed script", timeout: .seconds(90)), "\(run.text)")
        try await Task.sleep(for: .milliseconds(500))
        let asked = ContinuousClock.now
        run.process?.signal(SIGTERM)
        let stopped = await run.process?.wait(timeout: .seconds(20))
        #expect(stopped == .exited(0), "\(run.text)")
        #expect(ContinuousClock.now - asked < .seconds(10), "SIGTERM ends seeding at once")
        #expect(access(f.metadb + "/PG_VERSION", F_OK) != 0, "the next start seeds again")
    }

    @Test("a runtime directory others may write is refused by ampd and by ampctl (mode 0777, as another user's /tmp/amp-UID was)")
    func openRuntimeDirectory() async throws {
        let f = AmpdFixture()
        let open = f.base + "/open-run"
        mkdir(open, 0o700)
        chmod(open, 0o777)
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base], environment: ["XDG_RUNTIME_DIR": open])
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(77) && text.contains("refusing to put the varlink socket below \(open)") && text.contains("mode 0777"), "\(text)")
        let url = await ampctl(f, ["url"], runtime: open)
        #expect(exitCode(url) == 77 && url.output.contains("not trusting the socket"), "\(url.output)")
        chmod(open, 0o700)
    }

    @Test("reserved names are refused at creation (amp_testdb_mine was dropped, with its tables, at the next start)")
    func reservedNames() async throws {
        let f = AmpdFixture()
        let run = try await f.ready()
        for name in ["amp_testdb_mine", "shop__import_123", "shop__amp_copy_9"] {
            let r = await ampctl(f, ["createdb", name])
            #expect(exitCode(r) == 65 && r.output.contains("choose another name"), "\(name): \(r.output)")
        }
        // The varlink method refuses them too, whoever calls it.
        let client = try MetadbClient(path: f.socket)
        do {
            _ = try await client.createDatabase("amp_testdb_mine", from: nil)
            Issue.record("CreateDatabase accepted a reserved name")
        } catch {
            guard case .service(.invalidDatabaseName(let name, _)) = error else { Issue.record("\(error)"); return }
            #expect(name == "amp_testdb_mine")
        }
        let local = try #require(run.url)
        #expect(try LibPQ.query(local, "SELECT count(*) FROM pg_database WHERE datname LIKE 'amp\\_testdb\\_mine' OR datname LIKE '%\\_\\_import\\_%'").first == "0")
        await run.stop()
    }

    @Test("an interrupted import leaves no database: SIGTERM cleans up; after SIGKILL the next ampd start drops it; /dev/zero is refused")
    func interruptedImport() async throws {
        let f = AmpdFixture()
        var run = try await f.ready()
        let local = try #require(run.url)
        writeFile(f.base + "/slow.sql", "CREATE TABLE t (n int);\nSELECT pg_sleep(120);\n")
        func importing() async throws -> AmpdRun {
            let tool = try await f.start(["import", f.base + "/slow.sql", "--db", "slow"], executable: ampctlPath)
            try #require(await tool.waitForLine("running", timeout: .seconds(30)), "\(tool.text)")
            // The temporary database exists and psql is in it.
            #expect(await eventually(timeout: .seconds(10)) {
                (try? LibPQ.query(local, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()").first) == "1"
            })
            return tool
        }
        func leftovers() throws -> String? { try LibPQ.query(local, "SELECT count(*) FROM pg_database WHERE datname LIKE 'slow\\_\\_import\\_%'").first ?? nil }

        let tool = try await importing()
        let asked = ContinuousClock.now
        tool.process?.signal(SIGTERM)
        let status = await tool.process?.wait(timeout: .seconds(30))
        #expect(status == .exited(143), "\(tool.text)")
        #expect(ContinuousClock.now - asked < .seconds(15))
        #expect(tool.text.contains("interrupted by SIGTERM"), "\(tool.text)")
        #expect(try leftovers() == "0", "cleaned up: \(tool.text)")

        let killed = try await importing()
        killed.process?.signal(SIGKILL)
        _ = await killed.process?.wait(timeout: .seconds(10))
        #expect(try leftovers() == "1", "SIGKILL leaves it (nothing can clean up then)")
        await run.stop()
        run = try await f.ready()
        #expect(await eventually(timeout: .seconds(20)) { (try? leftovers()) == "0" }, "ampd dropped the leftover of the gone ampctl: \(run.text)")
        #expect(run.text.contains("left over by ampctl"), "\(run.text)")

        let zero = await ampctl(f, ["import", "/dev/zero", "--db", "zero"])
        #expect(exitCode(zero) == 65 && zero.output.contains("not a regular file"), "\(zero.output)")
        await run.stop()
    }

    @Test("a percent-encoded password never shows in an import's error; a password in argv is scrubbed and warned about")
    func passwordsInMessages() async throws {
        let f = AmpdFixture()
        let run = try await f.ready()
        let malformed = await ampctl(f, ["import", "postgresql://app:Se%40cret%2F99@[::1/shop", "--db", "shop"])
        #expect(exitCode(malformed) != 0, "\(malformed.output)")
        #expect(!malformed.output.contains("Se%40cret%2F99") && !malformed.output.contains("Se@cret/99"), "\(malformed.output)")
        let query = await ampctl(f, ["import", "postgresql://app@127.0.0.1:1/shop?pass%77ord=Qu3ry%21Pw&sslmode=disable", "--db", "shop"])
        #expect(!query.output.contains("Qu3ry") , "\(query.output)")
        #expect(query.output.contains("visible to other users in ps"), "warned: \(query.output)")
        await run.stop()
    }

    @Test("export writes a 0600 file; top --db of a missing database, reset --seed without seeds and a taken snapshot name fail without touching the cluster")
    func smallerOnes() async throws {
        let f = AmpdFixture()
        let run = try await f.ready()
        let local = try #require(run.url)
        _ = try LibPQ.rows(local, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")

        let dump = f.base + "/out.dump"
        let export = await ampctl(f, ["export", dump])
        #expect(export.ok, "\(export.output)")
        var st = stat()
        #expect(stat(dump, &st) == 0 && st.st_mode & 0o777 == 0o600, "exports are 0600 like snapshots")
        #expect(listDirectory(f.base).filter { $0.contains(".tmp-") }.isEmpty, "no temporary file left")

        let top = await ampctl(f, ["top", "--db", "nosuch"])
        #expect(exitCode(top) == 65 && top.output.contains("nosuch"), "\(top.output)")

        let reset = await ampctl(f, ["reset", "--seed", "--yes"])
        #expect(exitCode(reset) != 0 && reset.output.contains("no seed scripts are configured"), "\(reset.output)")
        #expect(try LibPQ.query(local, "SELECT n FROM kept").first == "7", "the cluster is as it was")

        let pid = try LibPQ.query(local, "SELECT pg_postmaster_start_time()::text").first ?? nil
        try makeDirectories(f.ampDir + "/snapshots/taken")
        let taken = await ampctl(f, ["snapshot", "create", "taken"])
        #expect(exitCode(taken) == 65 && taken.output.contains("exists already"), "\(taken.output)")
        #expect(try LibPQ.query(local, "SELECT pg_postmaster_start_time()::text").first ?? nil == pid, "PostgreSQL was not stopped")
        await run.stop()
    }
}
