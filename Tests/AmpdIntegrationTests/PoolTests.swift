#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Foundation
import Testing

/// `[pool] enabled` with Debian's PgBouncer 1.18 in front of a real PostgreSQL under `ampd
/// run` (amp@NAME: ``SystemdUnitTests``): pgbench's 200 clients against max_connections = 50,
/// SCRAM on the pool's TCP port with a wrong and a right password, the lookup function, the
/// status and metrics, a killed PgBouncer named in the status and restarted while PostgreSQL
/// serves on.
@Suite("connection pooling (built binaries, real PostgreSQL and PgBouncer)", .serialized, unprivileged)
struct PoolTests {
    static var installed: Bool { access("/usr/sbin/pgbouncer", X_OK) == 0 }
    /// The harness sets AMP_REQUIRE_POOL=1: the tests then run (and fail) without PgBouncer.
    static var required: Bool { getenv("AMP_REQUIRE_POOL").map { String(cString: $0) } == "1" }
    static let pgbench = "/usr/lib/postgresql/15/bin/pgbench"

    struct Project {
        let f: AmpdFixture
        let environment: [String: String]
        func ampctl(_ arguments: [String]) async -> ToolResult {
            await runIn(f.base, ampctlPath, arguments, environment: environment)
        }
    }

    func project(_ config: String) -> Project {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        mkdir(f.base + "/config", 0o700)
        writeFile(f.ampDir + "/config.toml", config)
        // Secrets (the TCP password) in the fixture, never in the account's own config.
        return Project(f: f, environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "XDG_CONFIG_HOME": f.base + "/config", "NO_COLOR": "1"]))
    }

    func status(_ p: Project) async throws -> [String: Any] {
        let s = await p.ampctl(["status", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(s.output.utf8)) as? [String: Any]
        return try #require(object?["pool"] as? [String: Any], "\(s.output)")
    }

    @Test("200 pgbench clients through the pool against max_connections = 50 all complete; SCRAM on TCP; status, metrics; a killed PgBouncer is named and restarted",
          .enabled(if: installed || required, "needs pgbouncer (apt install pgbouncer; make test installs it)"))
    func pooling() async throws {
        let port = freePort()
        let p = project("[pool]\nenabled = true\nlisten = \"127.0.0.1:\(port)\"\n[postgres.parameters]\nmax_connections = 50\n[backup]\narchive = false\n")
        let f = p.f
        let served = try await f.start(["run", "--amp-dir", f.base], environment: ["XDG_CONFIG_HOME": f.base + "/config"])
        try #require(await served.waitForLine("ready in ", timeout: .seconds(90)), "\(served.text)")
        #expect(await served.waitForLine("pool: PgBouncer (PID", timeout: .seconds(30)), "\(served.text)")
        let direct = try #require(served.url)

        let url = await p.ampctl(["url", "--pooled"])
        #expect(url.ok && url.output.contains("port=\(port)"), "\(url.output)")
        let pooled = url.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try LibPQ.query(pooled, "SELECT current_user = session_user").first == "t")

        // The lookup: a security definer owned by the dedicated role, with a fixed search_path.
        let function = try LibPQ.rows(direct, """
            SELECT p.prosecdef, pg_catalog.array_to_string(p.proconfig, ';'), pg_catalog.pg_get_userbyid(p.proowner),
                   pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'amp_pool' AND p.proname = 'lookup'
            """)
        #expect(function.first == ["t", "search_path=pg_catalog, pg_temp", "amp_pool_owner", "f"], "\(function)")
        #expect(try LibPQ.query(direct, "SELECT rolcanlogin::text || rolsuper::text FROM pg_catalog.pg_roles WHERE rolname = 'amp_pool_owner'").first == "falsefalse")

        // 200 clients, each with its own connection to the pool, against max_connections = 50.
        let initialized = await run(Self.pgbench, ["-i", "-s", "1", "-q", direct], environment: toolEnvironment())
        try #require(initialized.ok, "\(initialized.output)")
        let bench = await run(Self.pgbench, ["-c", "200", "-j", "2", "-t", "10", "-n", pooled], environment: toolEnvironment())
        #expect(bench.ok && bench.output.contains("number of transactions actually processed: 2000/2000"), "\(bench.output.suffix(1500))")
        #expect(!bench.output.contains("too many clients"), "\(bench.output.suffix(800))")
        // The same straight to PostgreSQL is refused: what the pool is for.
        let straight = await run(Self.pgbench, ["-c", "200", "-j", "2", "-t", "1", "-n", direct], environment: toolEnvironment())
        #expect(straight.output.contains("too many clients"), "\(straight.output.suffix(800))")

        // TCP: SCRAM with the role's password through the pool; a wrong one is refused.
        let tcp = await p.ampctl(["url", "--pooled", "--tcp"])
        #expect(tcp.ok && tcp.output.contains("@127.0.0.1:\(port)/"), "\(tcp.output)")
        let tcpURL = tcp.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try LibPQ.query(tcpURL, "SELECT 42").first == "42")
        let user = try #require(LibPQ.query(direct, "SELECT current_user").first ?? nil)
        let wrong = "postgresql://\(PostgresHandle.percentEncode(user)):wrong-password@127.0.0.1:\(port)/postgres"
        #expect(throws: LibPQError.self) { try LibPQ.rows(wrong, "SELECT 1") }
        do { _ = try LibPQ.rows(wrong, "SELECT 1") } catch { #expect(error.message.contains("authentication failed"), "\(error.message)") }
        // A database made after the start: the lookup is there (from template1), so TCP logins work.
        _ = try LibPQ.rows(direct, "CREATE DATABASE later")
        #expect(try LibPQ.query(tcpURL.replacingOccurrences(of: "/postgres", with: "/later"), "SELECT current_database()").first == "later")
        // The pool's own roles cannot log in on TCP, the admin console is the socket's only.
        for role in ["amp_pool_auth", "amp_pool_admin"] {
            #expect(throws: LibPQError.self) { try LibPQ.rows("postgresql://\(role):x@127.0.0.1:\(port)/postgres", "SELECT 1") }
        }

        // Status and metrics.
        let pool = try await status(p)
        #expect(pool["state"] as? String == "running" && pool["mode"] as? String == "transaction" && pool["size"] as? Int == 8, "\(pool)")
        let human = await p.ampctl(["status"])
        #expect(human.output.contains("PgBouncer running") && human.output.contains("clients "), "\(human.output)")
        let metrics = await p.ampctl(["metrics"])
        #expect(metrics.output.contains("pgbouncer_up 1") && metrics.output.contains("pgbouncer_pools_client_active_connections{database=\"postgres\""),
                "\(metrics.output.split(separator: "\n").filter { $0.contains("pgbouncer") || $0.contains("amp_pool") }) \(served.text.split(separator: "\n").filter { $0.contains("pool") })")
        let env = await p.ampctl(["env", "--pooled"])
        #expect(env.output.contains("export PGPORT='\(port)'"), "\(env.output)")

        // A killed PgBouncer: named in the status, PostgreSQL serves on, the pool comes back.
        let pid = try #require(pool["pid"] as? Int)
        #expect(kill(pid_t(pid), SIGKILL) == 0)
        let named = await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(100)) {
            ((try? await status(p))?["state"] as? String)?.contains("failed: PgBouncer ended (killed by signal 9") == true
        }
        #expect(named, "\(served.text.suffix(2000))")
        #expect(try LibPQ.query(direct, "SELECT 1").first == "1")
        let back = await eventuallyAsync(timeout: .seconds(20), every: .milliseconds(200)) {
            let s = try? await status(p)
            return s?["state"] as? String == "running" && s?["restarts"] as? Int == 1
        }
        #expect(back, "\(served.text.suffix(2000))")
        #expect(try LibPQ.query(pooled, "SELECT 2").first == "2")
        await served.stop()
        #expect(!served.text.contains("pgbouncer: FATAL"), "\(served.text.suffix(1500))")
    }

    @Test("[postgres] tls = true: the pool's TCP port takes SCRAM over TLS only (sslmode=require logs in, sslmode=disable is refused)",
          .enabled(if: installed || required, "needs pgbouncer (apt install pgbouncer; make test installs it)"))
    func tlsOnTCP() async throws {
        let port = freePort()
        let p = project("[postgres]\ntls = true\n[pool]\nenabled = true\nlisten = \"127.0.0.1:\(port)\"\n[backup]\narchive = false\n")
        let f = p.f
        let served = try await f.start(["run", "--amp-dir", f.base], environment: ["XDG_CONFIG_HOME": f.base + "/config"])
        try #require(await served.waitForLine("pool: PgBouncer (PID", timeout: .seconds(90)), "\(served.text)")
        let tcp = await p.ampctl(["url", "--pooled", "--tcp"])
        let url = tcp.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(tcp.ok && url.hasSuffix("?sslmode=require") && url.contains("@127.0.0.1:\(port)/"), "\(tcp.output)")
        #expect(try LibPQ.query(url + "&application_name=tls-check", "SELECT 'over TLS'").first == "over TLS")
        let plain = url.replacingOccurrences(of: "sslmode=require", with: "sslmode=disable")
        #expect(throws: LibPQError.self) { try LibPQ.rows(plain, "SELECT 1") }
        await served.stop()
    }

    @Test("a pool larger than max_connections allows: exit 78 naming the setting and the fix, nothing started",
          .enabled(if: installed || required, "needs pgbouncer (apt install pgbouncer; make test installs it)"))
    func tooLarge() async throws {
        let p = project("[pool]\nenabled = true\nsize = 45\n[postgres.parameters]\nmax_connections = 50\n")
        let (status, lines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base])
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(78) && text.contains("[pool] size = 45") && text.contains("lower size"), "\(text)")
        #expect(access(p.f.metadb + "/PG_VERSION", F_OK) != 0, "nothing started")
    }
}
