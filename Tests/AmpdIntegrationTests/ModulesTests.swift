#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Testing

/// `[postgres] audit` and `cron` with Debian's PostgreSQL 15 and its postgresql-15-pgaudit and
/// postgresql-15-cron packages (make test installs them), under `ampd run`; the journal fields
/// under amp@NAME are in ``SystemdUnitTests``.
@Suite("pgaudit and pg_cron (built ampd, real PostgreSQL and its packages)", .serialized, unprivileged)
struct ModulesTests {
    static var installed: Bool {
        access("/usr/lib/postgresql/15/lib/pgaudit.so", F_OK) == 0 && access("/usr/lib/postgresql/15/lib/pg_cron.so", F_OK) == 0
    }
    /// The harness sets AMP_REQUIRE_MODULES=1: the tests then run (and fail) without the packages.
    static var required: Bool { getenv("AMP_REQUIRE_MODULES").map { String(cString: $0) } == "1" }

    @Test("audit = true: DDL and role changes are logged by pgaudit; cron = true: a job scheduled with cron.schedule runs and is logged",
          .enabled(if: installed || required, "needs postgresql-15-pgaudit and postgresql-15-cron (make test installs them)"))
    func auditAndCron() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[postgres]\naudit = true\ncron = true\n[backup]\narchive = false\n")
        let run = try await f.ready()
        let url = try #require(run.url)
        #expect(try LibPQ.query(url, "SHOW shared_preload_libraries").first??.hasSuffix("pgaudit,pg_cron") == true)
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); CREATE ROLE auditor")
        #expect(await run.waitForLine("AUDIT: SESSION,1,1,DDL,CREATE TABLE,TABLE,public.t", timeout: .seconds(10)), "\(run.text)")
        #expect(await run.waitForLine("ROLE,CREATE ROLE", timeout: .seconds(10)), "\(run.text)")
        _ = try LibPQ.rows(url, "SELECT cron.schedule('amp-test', '* * * * *', 'INSERT INTO t VALUES (42)')")
        // pg_cron 1.4 schedules by the minute: the job runs at the next one.
        let ran = await eventuallyAsync(timeout: .seconds(75), every: .seconds(1)) {
            ((try? LibPQ.query(url, "SELECT count(*) FROM t WHERE n = 42").first ?? nil) ?? "0") != "0"
        }
        #expect(ran, "\(run.text)")
        #expect(await run.waitForLine("COMMAND completed: INSERT 0 1", timeout: .seconds(10)), "the run is logged: \(run.text)")
        await run.stop()
    }

    @Test("audit = true with binaries that have no pgaudit: exit 78 naming the package, nothing made",
          .enabled(if: WheelBinaries.directories.contains { $0.contains("pgserver") } || getenv("AMP_REQUIRE_VARLINK_CLI").map { String(cString: $0) } == "1",
                   "needs the pgserver wheel's PostgreSQL 16 (no contrib modules; AMP_TEST_PG_WHEEL_BINDIRS)"))
    func missingModule() async throws {
        let dir = try #require(WheelBinaries.directories.first { $0.contains("pgserver") }, "the pgserver wheel is not installed")
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[postgres]\naudit = true\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base, "--bin-dir", dir])
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(78) && text.contains("[postgres] audit = true needs pgaudit") && text.contains("apt install postgresql-16-pgaudit"), "\(text)")
        #expect(access(f.metadb, F_OK) != 0, "nothing made")
    }
}
