#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import SystemSupport
import Testing
import Varlink

/// Outgrowing the laptop: the local cluster on TCP with SCRAM, an external server behind the
/// same commands, and push/pull between them. Real servers: ampd's own PostgreSQL, and a second
/// PostgreSQL on 127.0.0.1 with SCRAM (and one with TLS from a test CA) as the external server.
@Suite("TCP opt-in, external servers, push/pull (built binaries, real servers)", .serialized, unprivileged)
struct OutgrowTests {
    struct Project {
        let f: AmpdFixture
        /// XDG_CONFIG_HOME of ampd and ampctl: the fixture's, so secrets never land in the real one.
        var config: String { f.base + "/config" }
        var environment: [String: String] { ["XDG_CONFIG_HOME": config] }

        func ampctl(_ args: [String]) async -> ToolResult {
            await runIn(f.base, ampctlPath, args, environment: toolEnvironment(
                ["XDG_RUNTIME_DIR": f.runtimeDirectory, "XDG_CONFIG_HOME": config, "NO_COLOR": "1"]))
        }

        func start(_ extra: [String] = [], ready: String = "ready in ") async throws -> AmpdRun {
            let ampd = try await f.start(["run", "--amp-dir", f.base] + extra, environment: environment)
            try #require(await ampd.waitForLine(ready, timeout: .seconds(90)), "\(ampd.text)")
            return ampd
        }

        func stop(_ ampd: AmpdRun) async {
            _ = ampd.process?.signal(SIGTERM)
            _ = await ampd.process?.wait(timeout: .seconds(30))
        }

        func configure(_ text: String) {
            mkdir(f.ampDir, 0o700)
            writeFile(f.ampDir + "/config.toml", text)
        }
    }

    func exitCode(_ r: ToolResult) -> Int32? { if case .exited(let c)? = r.status { return c }; return nil }
    func lastLine(_ r: ToolResult) -> String { r.output.split(separator: "\n").last.map(String.init) ?? "" }
    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o777 : nil
    }

    @Test("listen: SCRAM on TCP (a wrong password refused), the socket as before, auto port stable, TLS, off by default, non-loopback needs TLS")
    func tcpOptIn() async throws {
        let p = Project(f: AmpdFixture())
        p.configure("[postgres]\nlisten = \"auto\"\n")
        var ampd = try await p.start()
        let socketURL = try #require(ampd.url)
        let urlResult = await p.ampctl(["url", "--tcp"])
        #expect(urlResult.ok, "\(urlResult.output)")
        let tcpURL = lastLine(urlResult)
        let port = try #require(Int(readFile(p.f.ampDir + "/network/port")?.trimmedSpace ?? ""))
        #expect(tcpURL.hasPrefix("postgresql://") && tcpURL.contains("@127.0.0.1:\(port)/postgres"), "\(tcpURL)")
        #expect(try LibPQ.query(tcpURL, "SELECT host(inet_server_addr())").first == "127.0.0.1", "a TCP connection with the password")
        let password = try #require(readFile(p.config + "/amp/tcp/\(p.f.base.split(separator: "/").last ?? "").password")?.trimmedSpace)
        #expect(password.count == 32 && tcpURL.contains(password))
        #expect(mode(p.config + "/amp/tcp/\(p.f.base.split(separator: "/").last ?? "").password") == 0o600)
        do {
            _ = try LibPQ.query(tcpURL.replacing(password, with: "wrong-password"), "SELECT 1")
            Issue.record("a wrong password is refused")
        } catch {
            #expect(error.message.contains("password authentication failed"), "\(error.message)")
        }
        #expect(try LibPQ.query(socketURL, "SELECT current_user").first != nil, "the socket needs no password")
        #expect(try LibPQ.query(socketURL, "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%SCRAM-SHA-256%'").first == "0",
                "not even the verifier is in pg_stat_statements")
        let status = try JSONParser.parse(await p.ampctl(["status", "--json"]).output).objectValue ?? [:]
        #expect(status["listen"] == .string("127.0.0.1:\(port)"), "\(status)")
        let human = await p.ampctl(["status"])
        #expect(human.output.contains("TCP: 127.0.0.1:\(port)"), "\(human.output)")
        let env = await p.ampctl(["env", "--tcp"])
        #expect(env.output.contains("export PGPASSWORD=") && env.output.contains("export PGHOST='127.0.0.1'"), "\(env.output)")
        #expect(!ampd.text.contains(password), "the password is never logged")
        let (settingsStatus, settings) = try await p.f.runToEnd(["settings", "--amp-dir", p.f.base, "--json"], environment: p.environment)
        #expect(settingsStatus == .exited(0), "\(settings)")
        #expect(settings.contains { $0.contains("\"name\":\"port\",\"value\":\"\(port)\"") && $0.contains("listen") }, "ampd settings shows the listener: \(settings)")
        #expect(settings.contains { $0.contains("\"name\":\"password_encryption\",\"value\":\"scram-sha-256\"") }, "\(settings)")

        // Restart: the auto port and the password stay.
        await p.stop(ampd)
        ampd = try await p.start()
        #expect(lastLine(await p.ampctl(["url", "--tcp"])) == tcpURL, "same port and password after a restart")
        #expect(try LibPQ.query(tcpURL, "SELECT 1").first == "1")

        // TLS with a generated certificate.
        await p.stop(ampd)
        p.configure("[postgres]\nlisten = \"auto\"\ntls = true\n")
        ampd = try await p.start()
        let tlsURL = lastLine(await p.ampctl(["url", "--tcp"]))
        #expect(tlsURL.hasSuffix("?sslmode=require"), "\(tlsURL)")
        #expect(try LibPQ.query(tlsURL, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").first == "true")
        #expect(mode(p.f.ampDir + "/network/server.key") == 0o600)
        do {
            _ = try LibPQ.query(tlsURL.replacing("sslmode=require", with: "sslmode=disable"), "SELECT 1")
            Issue.record("with TLS on, plain TCP is refused")
        } catch {
            #expect(error.message.contains("no encryption") || error.message.contains("pg_hba.conf") || error.message.contains("reject"), "\(error.message)")
        }

        // Off again: no TCP listener, the socket works, url --tcp says how to turn it on.
        await p.stop(ampd)
        p.configure("[postgres]\n")
        ampd = try await p.start()
        let plainURL = try #require(ampd.url)
        #expect(try LibPQ.query(plainURL, "SHOW listen_addresses").first == "")
        #expect(throws: LibPQError.self) { try LibPQ.query(tcpURL, "SELECT 1") }
        let off = await p.ampctl(["url", "--tcp"])
        #expect(exitCode(off) == 69 && off.output.contains("listen = \"auto\""), "\(off.output)")
        await p.stop(ampd)

        // A listen address other machines can reach, without TLS: refused before anything starts.
        p.configure("[postgres]\nlisten = \"0.0.0.0:\(freePort())\"\n")
        let (refused, lines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base], environment: p.environment)
        #expect(refused == .exited(78), "\(lines)")
        #expect(lines.contains { $0.contains("needs TLS") && $0.contains("tls = true") }, "\(lines)")
        // A port in use: one line naming it.
        let busy = try await SourceServer(p.f)
        p.configure("[postgres]\nlisten = \"127.0.0.1:\(busy.port)\"\n")
        let (inUse, busyLines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base], environment: p.environment)
        #expect(inUse == .exited(69), "\(busyLines)")
        #expect(busyLines.contains { $0.contains("port \(busy.port) is in use") }, "\(busyLines)")
    }

    @Test("external server: init --external keeps the password out of the project; status/url/env/psql/databases/createdb; unreachable and back in the log; push/pull")
    func externalServer() async throws {
        let p = Project(f: AmpdFixture())
        let source = try await SourceServer(p.f)
        let name = "ext\(getpid())"

        // A local cluster first (push/pull copy between it and the external server).
        var ampd = try await p.start()
        let local = try #require(ampd.url)
        _ = try LibPQ.rows(local, "CREATE DATABASE app")
        _ = try LibPQ.rows(Metadb.url(local, database: "app"), "CREATE TABLE notes (id int); INSERT INTO notes SELECT generate_series(1, 250)")
        await p.stop(ampd)

        let initResult = await p.ampctl(["init", "--name", name, "--external", source.url])
        #expect(initResult.ok, "\(initResult.output)")
        #expect(initResult.output.contains("answers (PostgreSQL 15"), "\(initResult.output)")
        #expect(!initResult.output.contains(source.password), "never shown: \(initResult.output)")
        let config = try #require(readFile(p.f.ampDir + "/config.toml"))
        #expect(config.contains("url = \"postgresql://app@127.0.0.1:\(source.port)/shop\"") && !config.contains(source.password), "\(config)")
        let credential = p.config + "/amp/credentials/\(name).pgpass"
        #expect(readFile(credential)?.contains(source.password) == true && mode(credential) == 0o600)

        ampd = try await p.start(ready: "external server 127.0.0.1:\(source.port) answers")
        let statusJSON = await p.ampctl(["status", "--json"])
        #expect(statusJSON.ok, "\(statusJSON.output)")
        let status = try JSONParser.parse(statusJSON.output).objectValue ?? [:]
        #expect(status["state"] == .string("external") && status["healthy"] == .bool(true), "\(statusJSON.output)")
        #expect(status["server"] == .string("127.0.0.1:\(source.port)"))
        #expect(status["version"]?.stringValue?.hasPrefix("15.") == true)
        #expect(status["connections"] != nil && status["database_size_bytes"] != nil, "\(statusJSON.output)")
        let human = await p.ampctl(["status"])
        #expect(human.output.contains("State: external (reachable)"), "\(human.output)")
        #expect(lastLine(await p.ampctl(["url"])) == "postgresql://app@127.0.0.1:\(source.port)/shop")
        let env = await p.ampctl(["env"])
        #expect(env.output.contains("export PGPASSFILE='\(credential)'") && !env.output.contains(source.password), "\(env.output)")
        let psql = await p.ampctl(["psql", "--", "-Atc", "SELECT count(*) FROM items"])
        #expect(psql.ok && psql.output.contains("3000"), "\(psql.output)")
        let databases = await p.ampctl(["databases"])
        #expect(databases.output.contains("shop"), "\(databases.output)")
        #expect(await p.ampctl(["createdb", "made_here"]).ok)
        #expect(try LibPQ.query(source.url, "SELECT count(*) FROM pg_database WHERE datname = 'made_here'").first == "1", "created on the external server")
        let unconfirmed = await p.ampctl(["dropdb", "made_here"])
        #expect(exitCode(unconfirmed) == 64 && unconfirmed.output.contains("--yes") && unconfirmed.output.contains("external server"), "\(unconfirmed.output)")
        #expect(await p.ampctl(["dropdb", "made_here", "--yes"]).ok)
        #expect(try LibPQ.query(source.url, "SELECT count(*) FROM pg_database WHERE datname = 'made_here'").first == "0", "dropped on the external server")
        let snapshot = await p.ampctl(["snapshot", "create", "s1"])
        #expect(!snapshot.ok && snapshot.output.contains("external server"), "\(snapshot.output)")

        // The server goes away: unhealthy, logged once, ampd keeps running; then it is back.
        await source.stop()
        #expect(await ampd.waitForLine("is unreachable", timeout: .seconds(20)), "\(ampd.text)")
        let down = try JSONParser.parse(await p.ampctl(["status", "--json"]).output).objectValue ?? [:]
        #expect(down["state"] == .string("external") && down["healthy"] == .bool(false), "\(down)")
        #expect(down["last_error"]?.stringValue?.contains("127.0.0.1") == true, "names the server: \(down)")
        let failing = await p.ampctl(["databases"])
        #expect(!failing.ok && failing.output.split(separator: "\n").count == 1 && failing.output.contains("\(source.port)"), "one line: \(failing.output)")
        #expect(isAlive(ampd.process?.pid ?? 0))
        try await source.start()
        #expect(await ampd.waitForLine("is reachable again", timeout: .seconds(20)), "\(ampd.text)")

        // push/pull: the URL names shop; app is copied with --db.
        let push = await p.ampctl(["push", "--db", "app"])
        #expect(push.ok, "\(push.output)")
        #expect(push.output.contains("[4/4]"), "progress: \(push.output)")
        #expect(try LibPQ.query(Metadb.url(source.url, database: "app"), "SELECT count(*) FROM notes").first == "250")
        let again = await p.ampctl(["push", "--db", "app"])
        #expect(exitCode(again) == 65 && again.output.contains("--replace"), "never overwritten without --replace: \(again.output)")
        _ = try LibPQ.rows(Metadb.url(source.url, database: "app"), "INSERT INTO notes VALUES (251)")
        let pull = await p.ampctl(["pull", "--db", "app", "--replace"])
        #expect(pull.ok, "\(pull.output)")
        let pulledShop = await p.ampctl(["pull"])
        #expect(pulledShop.ok, "the URL's database by default: \(pulledShop.output)")
        let missing = await p.ampctl(["push", "--db", "nonexistent"])
        #expect(exitCode(missing) == 65, "\(missing.output)")
        #expect(try LibPQ.query(source.url, "SELECT count(*) FROM pg_database WHERE datname LIKE '%__amp_copy_%'").first == "0", "nothing half-copied")
        await p.stop(ampd)
        // The local cluster has what was pulled.
        p.configure("[postgres]\n")
        ampd = try await p.start()
        let localAgain = try #require(ampd.url)
        #expect(try LibPQ.query(Metadb.url(localAgain, database: "app"), "SELECT count(*) FROM notes").first == "251")
        #expect(try LibPQ.query(Metadb.url(localAgain, database: "shop"), "SELECT count(*) FROM items").first == "3000")
        await p.stop(ampd)
        #expect(!ampd.text.contains(source.password), "the password is never in ampd's log")
    }

    @Test("external server errors: a wrong password, an unknown host, a certificate that does not verify: one line, no password; TLS with a test CA works")
    func externalServerErrors() async throws {
        let p = Project(f: AmpdFixture())
        let source = try await SourceServer(p.f, tls: true)
        let ca = try #require(source.caCertificate)
        let name = "tls\(getpid())"

        // verify-full against the test CA, by the name in the certificate.
        let good = "postgresql://app:\(source.password)@localhost:\(source.port)/shop?sslmode=verify-full&sslrootcert=\(ca)"
        #expect(await p.ampctl(["init", "--name", name, "--external", good]).ok)
        let ampd = try await p.start(ready: "answers")
        let status = try JSONParser.parse(await p.ampctl(["status", "--json"]).output).objectValue ?? [:]
        #expect(status["state"] == .string("external") && status["tls"] == .bool(true), "\(status)")
        let psql = await p.ampctl(["psql", "--", "-Atc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
        #expect(psql.output.contains("t"), "psql over TLS: \(psql.output)")
        await p.stop(ampd)

        // The same server through a service= entry of pg_service.conf, password and all in it.
        let services = p.f.base + "/pg_service.conf"
        writeFile(services, "[amptest]\nhost=localhost\nport=\(source.port)\nuser=app\ndbname=shop\npassword=\(source.password)\nsslmode=verify-full\nsslrootcert=\(ca)\n")
        chmod(services, 0o600)
        p.configure("[postgres]\nurl = \"postgresql://?service=amptest\"\n")
        let viaService = try await p.f.start(["run", "--amp-dir", p.f.base], environment: p.environment.merging(["PGSERVICEFILE": services]) { _, new in new })
        #expect(await viaService.waitForLine("external server service amptest answers", timeout: .seconds(30)), "\(viaService.text)")
        #expect(!viaService.text.contains(source.password))
        await p.stop(viaService)

        // The address is not in the certificate: verification fails at once.
        let mismatch = "postgresql://app:\(source.password)@127.0.0.1:\(source.port)/shop?sslmode=verify-full&sslrootcert=\(ca)"
        let warned = await p.ampctl(["init", "--name", name, "--external", mismatch])
        #expect(warned.output.contains("warning:") && warned.output.contains("does not match host name"), "\(warned.output)")
        let (tlsStatus, tlsLines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base], environment: p.environment)
        #expect(tlsStatus == .exited(77), "\(tlsLines)")
        let tlsError = tlsLines.filter { $0.contains("refused amp") }
        #expect(tlsError.count == 1 && tlsError[0].contains("127.0.0.1") && tlsError[0].contains("\(source.port)"), "\(tlsLines)")

        // A wrong password.
        let wrong = "postgresql://app:not-the-password@localhost:\(source.port)/shop?sslmode=verify-full&sslrootcert=\(ca)"
        let wrongInit = await p.ampctl(["init", "--name", name, "--external", wrong])
        #expect(wrongInit.output.contains("password authentication failed") && !wrongInit.output.contains("not-the-password"), "\(wrongInit.output)")
        let (wrongStatus, wrongLines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base], environment: p.environment)
        #expect(wrongStatus == .exited(77), "\(wrongLines)")
        #expect(wrongLines.contains { $0.contains("password authentication failed") && $0.contains("localhost") }, "\(wrongLines)")
        #expect(!wrongLines.joined().contains("not-the-password"))

        // An unknown host: waited for until the start timeout, then one line naming it.
        #expect(await p.ampctl(["init", "--name", name, "--external", "postgresql://app@no-such-host.invalid:5432/shop"]).output.contains("no-such-host.invalid"))
        let (unknown, unknownLines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base, "--start-timeout", "2s"], environment: p.environment)
        #expect(unknown == .exited(69), "\(unknownLines)")
        #expect(unknownLines.contains { $0.contains("did not answer within") && $0.contains("no-such-host.invalid") }, "\(unknownLines)")
        // A password in config.toml is refused and not echoed.
        p.configure("[postgres]\nurl = \"postgresql://app:\(source.password)@localhost/shop\"\n")
        let (inFile, inFileLines) = try await p.f.runToEnd(["run", "--amp-dir", p.f.base], environment: p.environment)
        #expect(inFile == .exited(78) && !inFileLines.joined().contains(source.password), "\(inFileLines)")
    }
}

