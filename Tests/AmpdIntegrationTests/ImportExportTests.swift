#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing

/// A second PostgreSQL on 127.0.0.1 with a SCRAM password, standing in for the Docker container
/// a project imports from and for a project's external server (optionally with TLS from a test
/// CA); stopped and removed at the fixture's clean-up.
final class SourceServer: @unchecked Sendable {
    let port: Int
    let password = "s3cr3t-Pw-\(getpid())"
    let directory: String
    /// The test CA's certificate, when the server has TLS (its certificate names `localhost`).
    let caCertificate: String?
    private let fixture: AmpdFixture
    private var server: AmpdRun?
    var url: String { "postgresql://app:\(password)@127.0.0.1:\(port)/shop" }

    init(_ f: AmpdFixture, tls: Bool = false) async throws {
        port = freePort()
        fixture = f
        directory = f.base + "/source"
        let dir = directory
        mkdir(dir, 0o700)
        caCertificate = tls ? dir + "/ca.crt" : nil
        writeFile(dir + "/pw", password + "\n")
        let initdb = await run("/usr/lib/postgresql/15/bin/initdb", ["-D", dir + "/data", "-U", "app", "--auth=scram-sha-256", "--pwfile=" + dir + "/pw"],
                               environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"])
        try #require(initdb.ok, "\(initdb.output)")
        if tls {
            // A CA of the test's own, and a server certificate for "localhost" signed by it.
            writeFile(dir + "/san.ext", "subjectAltName=DNS:localhost\n")
            for args in [
                ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=amp test CA",
                 "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt"],
                ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", dir + "/server.key", "-out", dir + "/server.csr"],
                ["x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.crt", "-CAkey", dir + "/ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", dir + "/san.ext", "-out", dir + "/server.crt"],
            ] {
                let r = await run("/usr/bin/openssl", args, environment: ["PATH": "/usr/bin:/bin", "RANDFILE": dir + "/.rnd"])
                try #require(r.ok, "openssl \(args[0]): \(r.output)")
            }
            chmod(dir + "/server.key", 0o600)
        }
        try await start()
        let admin = "postgresql://app@127.0.0.1:\(port)/postgres?password=\(password)"
        _ = try LibPQ.rows(admin, "CREATE DATABASE shop")
        _ = try LibPQ.rows("postgresql://app@127.0.0.1:\(port)/shop?password=\(password)", """
            CREATE TABLE items (id serial PRIMARY KEY, name text);
            INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 3000) g;
            CREATE ROLE reader
            """)
    }

    /// Starts (again) and waits until it accepts connections.
    func start() async throws {
        var args = ["-D", directory + "/data", "-k", directory, "-c", "listen_addresses=127.0.0.1", "-p", "\(port)"]
        if caCertificate != nil {
            args += ["-c", "ssl=on", "-c", "ssl_cert_file=\(directory)/server.crt", "-c", "ssl_key_file=\(directory)/server.key"]
        }
        let server = try await fixture.start(args, executable: "/usr/lib/postgresql/15/bin/postgres")
        try #require(await server.waitForLine("ready to accept connections", timeout: .seconds(30)), "\(server.text)")
        self.server = server
    }

    /// Stops it (fast shutdown) and waits until it is gone.
    func stop() async {
        _ = server?.process?.signal(SIGINT)
        _ = await server?.process?.wait(timeout: .seconds(30))
        server = nil
    }
}

/// A TCP port nobody listens on right now (bound once to port 0, then released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

@Suite("ampctl import / export (built binaries, a real SCRAM source server)", .serialized, unprivileged)
struct ImportExportTests {
    func ampctl(_ f: AmpdFixture, _ args: [String]) async -> ToolResult {
        await runIn(f.base, ampctlPath, args, environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"]))
    }

    func exitCode(_ r: ToolResult) -> Int32? { if case .exited(let c)? = r.status { return c }; return nil }

    func databases(_ url: String) throws -> [String] { try LibPQ.query(url, "SELECT datname FROM pg_database ORDER BY 1").compactMap { $0 } }

    @Test("import from a SCRAM server by URL: data equal, password never shown; errors leave nothing behind; export round-trips")
    func importAndExport() async throws {
        let f = AmpdFixture()
        let source = try await SourceServer(f)
        let ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        let local = try #require(ampd.url)
        let shop = local.replacing("postgresql:///postgres?", with: "postgresql:///shop?")

        let imported = await ampctl(f, ["import", source.url, "--roles"])
        #expect(imported.ok, "\(imported.output)")
        #expect(try LibPQ.query(shop, "SELECT count(*) FROM items").first == "3000")
        #expect(try LibPQ.query(local, "SELECT count(*) FROM pg_roles WHERE rolname IN ('app', 'reader')").first == "2", "--roles")
        #expect(!imported.output.contains(source.password), "the password is never shown: \(imported.output)")

        let again = await ampctl(f, ["import", source.url])
        #expect(exitCode(again) == 65 && again.output.contains("--replace"), "\(again.output)")

        let wrong = await ampctl(f, ["import", source.url.replacing(source.password, with: "wrong-password"), "--db", "other"])
        #expect(exitCode(wrong) == 77, "\(wrong.output)")
        #expect(wrong.output.contains("password authentication failed") && !wrong.output.contains("wrong-password"), "\(wrong.output)")
        #expect(wrong.output.split(separator: "\n").filter { !$0.contains("warning:") }.count == 1, "one line: \(wrong.output)")
        #expect(wrong.output.contains("visible to other users in ps"), "a password in argv is warned about: \(wrong.output)")

        let closed = await ampctl(f, ["import", "postgresql://app:\(source.password)@127.0.0.1:\(freePort())/shop", "--db", "other"])
        #expect(exitCode(closed) == 69, "\(closed.output)")
        #expect(!closed.output.contains(source.password))

        let dump = f.base + "/shop.dump"
        let export = await ampctl(f, ["export", "--db", "shop", dump])
        #expect(export.ok, "\(export.output)")
        let listing = await run("/usr/lib/postgresql/15/bin/pg_restore", ["-l", dump], environment: ["PATH": "/usr/bin:/bin"])
        #expect(listing.ok && listing.output.contains("TABLE DATA public items"), "plain pg_restore reads it: \(listing.output)")
        let copy = await ampctl(f, ["import", dump, "--db", "shop_copy"])
        #expect(copy.ok, "\(copy.output)")
        #expect(try LibPQ.query(shop.replacing("/shop?", with: "/shop_copy?"), "SELECT count(*) FROM items").first == "3000")
        let replaced = await ampctl(f, ["import", dump, "--db", "shop", "--replace"])
        #expect(replaced.ok, "\(replaced.output)")

        writeFile(f.base + "/bad.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nSELECT nope;\n")
        let bad = await ampctl(f, ["import", f.base + "/bad.sql"])
        #expect(exitCode(bad) == 1, "\(bad.output)")
        #expect(bad.output.contains("bad.sql:3"), "names the file and line: \(bad.output)")

        let names = try databases(local)
        #expect(!names.contains { $0.contains("__import_") } && !names.contains("other") && !names.contains("bad"), "nothing half-imported: \(names)")
        #expect(listDirectory(f.ampDir).allSatisfy { !$0.hasPrefix(".import-") })
        #expect(!ampd.text.contains(source.password), "ampd's log never holds the password")
    }
}
