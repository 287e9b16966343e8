#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import Dispatch
import SystemSupport
import Testing
import Varlink

/// An S3-compatible server for pgBackRest: moto's server (PyPI) on a free port, behind socat
/// as a TLS terminator with a self-signed certificate (pgBackRest speaks only HTTPS; moto's own
/// `--ssl` fails with OpenSSL 3), with one bucket. Its processes end with the fixture.
/// socat's `nodelay` on both sides: without it each request waits for a delayed ACK (50 ms a
/// file: a 4 MB first backup took 51 s).
struct S3TestServer {
    static let bucket = "amp-test"
    let tlsPort: Int

    /// `moto_server`: AMP_TEST_MOTO_SERVER (the harness's venv), else on PATH.
    static var motoServer: String? {
        if let p = getenv("AMP_TEST_MOTO_SERVER").map({ String(cString: $0) }), access(p, X_OK) == 0 { return p }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { $0 + "/moto_server" }.first { access($0, X_OK) == 0 }
    }

    static var available: Bool { motoServer != nil && access("/usr/bin/socat", X_OK) == 0 && access("/usr/bin/pgbackrest", X_OK) == 0 }
    /// CI sets AMP_REQUIRE_S3=1: the test then runs (and fails) when a component is missing.
    static var required: Bool { getenv("AMP_REQUIRE_S3").map { String(cString: $0) } == "1" }

    static func start(_ f: AmpdFixture) async throws -> S3TestServer {
        let moto = try #require(motoServer, "moto_server is not installed: pip install 'moto[server]' (make test does)")
        let dir = f.base + "/s3"
        mkdir(dir, 0o700)
        let httpPort = freePort(), tlsPort = freePort()
        let cert = await run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                                                  "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"], environment: toolEnvironment())
        try #require(cert.ok, "\(cert.output)")
        writeFile(dir + "/both.pem", (readFile(dir + "/key.pem") ?? "") + (readFile(dir + "/cert.pem") ?? ""))
        for (exe, args) in [(moto, ["-H", "127.0.0.1", "-p", "\(httpPort)"]),
                            ("/usr/bin/socat", ["OPENSSL-LISTEN:\(tlsPort),bind=127.0.0.1,reuseaddr,fork,nodelay,cert=\(dir)/both.pem,verify=0", "TCP:127.0.0.1:\(httpPort),nodelay"])] {
            let child = try await ChildProcess.spawn(SpawnConfiguration(
                executable: exe, arguments: args, environment: toolEnvironment(["HOME": dir]), workingDirectory: dir, output: .discard))
            f.defer_ {
                child.signal(SIGKILL)
                let done = DispatchSemaphore(value: 0)
                child.onExit { _ in done.signal() }
                done.wait()
            }
        }
        // The bucket, once moto answers (its start takes a few seconds).
        let made = await eventuallyAsync(timeout: .seconds(60), every: .milliseconds(500)) {
            await run("/usr/bin/python3", ["-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:\(httpPort)/\(bucket)', method='PUT'), timeout=5)"],
                      environment: toolEnvironment()).ok
        }
        try #require(made, "moto_server did not answer on port \(httpPort)")
        return S3TestServer(tlsPort: tlsPort)
    }

    /// `[backup]` of config.toml for this server (the secret comes from the environment).
    var configuration: String {
        let options = ["repo1-type=s3", "repo1-s3-bucket=\(Self.bucket)", "repo1-s3-endpoint=127.0.0.1", "repo1-storage-port=\(tlsPort)",
                       "repo1-storage-verify-tls=n", "repo1-s3-uri-style=path", "repo1-s3-region=us-east-1", "repo1-s3-key=amp", "repo1-path=/amp"]
        return "[backup]\nengine = \"pgbackrest\"\nrepository = [" + options.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n"
    }

    static let secretEnvironment = ["PGBACKREST_REPO1_S3_KEY_SECRET": "not-a-real-secret"]
}

/// `[backup] engine = "pgbackrest"` against an S3 server, with Debian's PostgreSQL 15 (pgBackRest
/// 2.45, Debian 12's, supports PostgreSQL up to 15).
@Suite("the pgBackRest engine against an S3 server (built binaries, real PostgreSQL and pgBackRest)", .serialized, unprivileged)
struct PgBackRestTests {
    let helpers = BackupTests()

    @Test("archive, backups (full then incremental), restores to a moment and to a restore point, verify and --into, all through an S3 repository",
          .enabled(if: S3TestServer.available || S3TestServer.required, "needs moto_server (pip install 'moto[server]'), socat and pgbackrest: make test installs them"))
    func s3() async throws {
        let f = AmpdFixture()
        let s3 = try await S3TestServer.start(f)
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", s3.configuration)
        let run = try await f.start(["run", "--amp-dir", f.base], environment: S3TestServer.secretEnvironment)
        try #require(await run.waitForLine("ready in ", timeout: .seconds(90)), "\(run.text)")
        let url = try #require(run.url)
        let env = S3TestServer.secretEnvironment
        func ampctl(_ args: [String], _ extra: [String: String] = [:]) async -> ToolResult { await helpers.ampctl(f, args, env.merging(extra) { _, b in b }) }

        let backedUp = await eventuallyAsync(timeout: .seconds(90), every: .milliseconds(500)) {
            (helpers.json(await ampctl(["backup", "list", "--json"]))?["backups"]?.arrayValue?.count ?? 0) > 0
        }
        #expect(backedUp, "\(run.text)")
        let list = helpers.json(await ampctl(["backup", "list", "--json"]))
        let archive = list?["archive"]?.objectValue
        #expect(archive?["target"]?.stringValue?.contains("s3 repository (bucket \(S3TestServer.bucket))") == true, "\(String(describing: archive))")
        #expect(archive?["state"] == .string("archiving with pgBackRest") && archive?["restorable_from"]?.stringValue != nil, "\(String(describing: archive))")
        let configFile = f.ampDir + "/pgbackrest/pgbackrest.conf"
        var st = stat()
        #expect(stat(configFile, &st) == 0 && st.st_mode & 0o777 == 0o600, "the generated configuration holds the secret: 0600")
        #expect(readFile(configFile)?.contains("repo1-s3-key-secret=not-a-real-secret") == true)
        #expect(try LibPQ.query(url, "SHOW archive_command").first??.contains("archive-push %p") == true)

        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        try await Task.sleep(for: .milliseconds(1100))
        let between = helpers.now()
        try await Task.sleep(for: .milliseconds(1100))
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (2)")
        let point = await ampctl(["restore-point", "two"])
        #expect(point.ok, "\(point.output)")
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (3)")

        let restored = await ampctl(["restore", "--to", between, "--yes"])
        #expect(restored.ok, "\(restored.output)\n\(run.text)")
        #expect(helpers.rows(url) == "1", "the first commit and not the second")
        let toPoint = await ampctl(["restore", "--to", "two", "--yes"])
        #expect(toPoint.ok, "\(toPoint.output)")
        #expect(helpers.rows(url) == "1,2", "the restore point")

        let created = helpers.json(await ampctl(["backup", "create", "--json"]))
        #expect(created?["id"]?.stringValue?.hasSuffix("I") == true, "the second backup is incremental: \(String(describing: created))")
        let verified = await ampctl(["backup", "verify"])
        #expect(verified.ok && verified.output.contains("pgbackrest verify") && verified.output.contains("pg_amcheck"), "\(verified.output)")
        let listed = helpers.json(await ampctl(["backup", "list", "--json"]))?["backups"]?.arrayValue?.compactMap(\.objectValue) ?? []
        #expect(listed.last?["verified"]?.stringValue != nil && listed.last?["parent"]?.stringValue == listed.first?["id"]?.stringValue,
                "the verified backup is marked, and the incremental names the full one: \(listed)")

        // --into: the library in ampctl restores from S3 beside the running cluster.
        // pgBackRest holds whole segments: a switch, pushed, puts the last commit in the repository.
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (4)")
        let segment = try #require(try LibPQ.query(url, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())").first ?? nil)
        let pushed = await eventuallyAsync(timeout: .seconds(60), every: .milliseconds(200)) {
            ((try? LibPQ.query(url, "SELECT last_archived_wal FROM pg_catalog.pg_stat_archiver").first ?? nil) ?? "").map { $0 >= segment } ?? false
        }
        #expect(pushed, "segment \(segment) pushed")
        let home = f.base + "/home"
        mkdir(home, 0o700)
        let copy = f.base + "/copy"
        let into = await ampctl(["restore", "--to", "latest", "--into", copy, "--name", "copy-\(getpid())"], ["HOME": home])
        #expect(into.ok, "\(into.output)")
        #expect(helpers.rows(url) == "1,2,4", "the current cluster is untouched")
        let other = try await f.start(["run", "--amp-dir", copy])
        #expect(await other.waitForLine("ready in ", timeout: .seconds(90)), "\(other.text)")
        if let otherURL = other.url { #expect(helpers.rows(otherURL) == "1,2,4", "latest holds every commit pushed before it") }
        await other.stop()
        #expect(!listDirectory(f.ampDir).contains { $0.hasPrefix(".pitr-") || $0.hasPrefix(".verify-") }, "nothing left aside")
        await run.stop()

        // The data directory deleted: ampd makes no empty cluster over the repository's, and an
        // offline restore --to latest brings every pushed commit back.
        removeTree(f.metadb)
        let (refused, said) = try await f.runToEnd(["run", "--amp-dir", f.base], environment: S3TestServer.secretEnvironment)
        #expect(refused == .exited(73) && said.joined().contains("pgBackRest repository (stanza"), "\(said.suffix(5))")
        #expect(access(f.metadb + "/PG_VERSION", F_OK) != 0, "no new, empty cluster")
        let back = await ampctl(["restore", "--to", "latest", "--yes"])
        #expect(back.ok, "\(back.output)")
        let restarted = try await f.start(["run", "--amp-dir", f.base], environment: S3TestServer.secretEnvironment)
        #expect(await restarted.waitForLine("ready in ", timeout: .seconds(90)), "\(restarted.text)")
        if let again = restarted.url { #expect(helpers.rows(again) == "1,2,4", "every pushed commit is back") }
        await restarted.stop()
    }

    @Test("engine = pgbackrest with synchronous = true is refused at start, naming both settings")
    func synchronousRefused() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[backup]\nengine = \"pgbackrest\"\nsynchronous = true\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(status == .exited(78) && lines.joined().contains("synchronous = true works with engine = \"amp\" only"), "\(lines)")
        #expect(access(f.metadb, F_OK) != 0, "nothing made")
        writeFile(f.ampDir + "/config.toml", "[backup]\nengine = \"pgbackrest\"\nrepository = [\"repo1 type=s3\"]\n")
        let (bad, out) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(bad == .exited(78) && out.joined().contains("backup.repository"), "\(out)")
    }
}
