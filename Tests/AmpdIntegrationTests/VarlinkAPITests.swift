#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import CSocket
import FoundationEssentials
import Testing
import Varlink

/// The Python `varlink` package (PyPI) the harness installs: a client nobody here wrote.
enum PythonVarlink {
    static var python: String? {
        guard let p = getenv("AMP_VARLINK_PYTHON").map({ String(cString: $0) }), access(p, X_OK) == 0 else { return nil }
        return p
    }
    static var required: Bool { getenv("AMP_REQUIRE_VARLINK_CLI").map { String(cString: $0) } == "1" }
}

let pythonVarlinkAvailable = ConditionTrait.enabled(
    if: geteuid() != 0 && (PythonVarlink.required || PythonVarlink.python != nil),
    "needs AMP_VARLINK_PYTHON: a python with the varlink package from PyPI (make test as root sets it up)")

/// Runs `python -m varlink.cli ARGS`.
func varlinkCLI(_ arguments: [String]) async -> ToolResult {
    guard let python = PythonVarlink.python else { return ToolResult(status: nil, output: "AMP_VARLINK_PYTHON is not set") }
    return await run(python, ["-m", "varlink.cli"] + arguments, environment: toolEnvironment(["PYTHONDONTWRITEBYTECODE": "1"]), timeout: .seconds(30))
}

/// The built ampctl.
var ampctlPath: String { productsDirectory + "/ampctl" }

@Suite("io.amp.Metadb over varlink (built ampd, real PostgreSQL)", .serialized, unprivileged)
struct VarlinkAPITests {
    /// Starts `ampd run` for a fresh amp dir and waits for its ready line.
    func readyAmpd(_ f: AmpdFixture) async throws -> AmpdRun {
        let run = try await f.start(["run", "--amp-dir", f.base])
        try #require(await run.waitForLine("ready in "), "\(run.text)")
        return run
    }

    @Test("conformance: the python varlink client reads the interface and calls every method", pythonVarlinkAvailable)
    func pythonClient() async throws {
        let f = AmpdFixture()
        _ = try await readyAmpd(f)
        let address = "unix:" + f.socket
        let info = await varlinkCLI(["info", address])
        #expect(info.ok && info.output.contains("io.amp.Metadb") && info.output.contains("org.varlink.service"), "\(info.output)")
        let help = await varlinkCLI(["help", address + "/io.amp.Metadb"])
        #expect(help.ok, "\(help.output)")
        for member in ["method GetStatus", "method WatchStatus", "method CreateDatabase", "error DatabaseExists", "type Status"] {
            #expect(help.output.contains(member), "python's parse of the IDL shows \(member)")
        }
        func call(_ method: String, _ args: String = "{}", more: Bool = false) async -> String {
            let r = await varlinkCLI(["call"] + (more ? ["--more"] : []) + [address + "/io.amp.Metadb." + method, args])
            #expect(r.ok, "\(method): \(r.output)")
            return r.output
        }
        #expect(await call("GetStatus").contains("\"state\": \"ready\""))
        #expect(await call("GetConnection").contains("\"DATABASE_URL\""))
        #expect(await call("CreateDatabase", #"{"name": "from_python"}"#).contains("\"from_python\""))
        #expect(await call("ListDatabases").contains("\"from_python\""))
        // The CLI exits 0 on an error reply: the error name is in its output.
        #expect(await call("CreateDatabase", #"{"name": "from_python"}"#).contains("io.amp.Metadb.DatabaseExists"))
        #expect(await call("CreateDatabase", #"{"name": "Bad Name"}"#).contains("io.amp.Metadb.InvalidDatabaseName"))
        #expect(await call("CreateDatabase", #"{"name": 5}"#).contains("org.varlink.service.InvalidParameter"))
        #expect(await call("DropDatabase", #"{"name": "template1"}"#).contains("io.amp.Metadb.ProtectedDatabase"))
        #expect(!(await call("DropDatabase", #"{"name": "from_python"}"#)).contains("error"), "an empty reply: nothing printed")
        #expect(await call("DropDatabase", #"{"name": "from_python"}"#).contains("io.amp.Metadb.NoSuchDatabase"))
        #expect(await call("WatchStatus").contains("org.varlink.service.ExpectedMore"))
        // WatchStatus with --more never ends by itself: one reply arrives, then stop the CLI.
        let watch = await run(PythonVarlink.python ?? "", ["-u", "-m", "varlink.cli", "call", "--more", address + "/io.amp.Metadb.WatchStatus", "{}"],
                              environment: toolEnvironment(), timeout: .seconds(3))
        #expect(watch.output.contains("\"state\": \"ready\""), "\(watch.output)")
        let nf = await varlinkCLI(["call", address + "/io.amp.Metadb.Nope", "{}"])
        #expect(nf.output.contains("org.varlink.service.MethodNotFound"), "\(nf.output)")
    }

    @Test("malformed and concurrent clients: ampd answers the others and stays up")
    func abuse() async throws {
        let f = AmpdFixture()
        let run = try await readyAmpd(f)
        let silent = amp_unix_connect(f.socket)
        #expect(silent >= 0)
        defer { close(silent) }
        for bad in ["{not json", #"{"method":"io.amp.Metadb.GetStatus","extra":1}"#, String(repeating: "x", count: 2 << 20)] {
            let fd = amp_unix_connect(f.socket)
            let bytes = Array(bad.utf8) + (bad.count > 1000 ? [] : [0])
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
        }
        let failures = Counter()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    do {
                        let c = try VarlinkClient.connect(path: f.socket)
                        let r = try await c.call("io.amp.Metadb.GetStatus", [:], timeout: .seconds(30))
                        if r["status"]?.objectValue?["state"] != .string("ready") { failures.add() }
                    } catch {
                        failures.add()
                    }
                }
            }
        }
        #expect(failures.value == 0)
        #expect(run.process?.exitStatus == nil, "ampd is still running")
        let c = try VarlinkClient.connect(path: f.socket)
        await #expect(throws: VarlinkError.invalidParameter("name")) { try await c.call("io.amp.Metadb.CreateDatabase", ["name": .int(1)]) }
        await #expect(throws: VarlinkError.methodNotFound("io.amp.Metadb.Nope")) { try await c.call("io.amp.Metadb.Nope") }
        await #expect(throws: VarlinkError.interfaceNotFound("io.nope.X")) { try await c.call("io.nope.X.Y") }
    }

    @Test("WatchStatus streams the current status, then the change to stopping")
    func watchStatus() async throws {
        let f = AmpdFixture()
        let run = try await readyAmpd(f)
        let c = try VarlinkClient.connect(path: f.socket)
        var states: [String] = []
        for try await reply in c.stream("io.amp.Metadb.WatchStatus") {
            let state = reply["status"]?.objectValue?["state"]?.stringValue ?? "?"
            states.append(state)
            if states.count == 1 { run.process?.signal(SIGTERM) }
            if state == "stopping" { break }
        }
        #expect(states.first == "ready")
        #expect(states.contains("stopping"), "\(states)")
        #expect(await run.process?.wait(timeout: .seconds(30)) == .exited(0))
        #expect(access(f.socket, F_OK) != 0, "the socket is removed at exit")
    }

    @Test("ampctl against ampd run: status --json, createdb, psql -c, env; after stop status says inactive (exit 3)")
    func ampctlForeground() async throws {
        let f = AmpdFixture()
        let run = try await readyAmpd(f)
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"])
        func ampctl(_ args: [String]) async -> ToolResult {
            await runIn(f.base, ampctlPath, args, environment: env)
        }
        let status = await ampctl(["status", "--json"])
        #expect(status.ok, "\(status.output)")
        let json = try JSONParser.parse(status.output).objectValue
        #expect(json?["state"] == .string("ready"))
        #expect(json?["url"]?.stringValue?.contains(f.base.replacing("/", with: "%2F")) == true)
        #expect(json?["postmaster_pid"]?.intValue != nil)
        #expect(json?["database_size_bytes"]?.intValue ?? 0 > 0)
        #expect(await ampctl(["createdb", "shop"]).ok)
        let dup = await ampctl(["createdb", "shop"])
        #expect(dup.status == .exited(65) && dup.output.contains("exists already"), "\(dup.output)")
        let psql = await ampctl(["psql", "-d", "shop", "--", "-Atc", "select current_database()"])
        #expect(psql.output.trimmedSpace == "shop", "\(psql.output)")
        let envOut = await ampctl(["env"])
        #expect(envOut.output.contains("export PGHOST='\(f.metadb)'"), "\(envOut.output)")
        let human = await ampctl(["status"])
        #expect(human.output.contains("● amp@") && human.output.contains("State: ready"), "\(human.output)")
        run.process?.signal(SIGTERM)
        _ = await run.process?.wait(timeout: .seconds(30))
        let after = await ampctl(["status"])
        #expect(after.status == .exited(3), "\(after.output)")
        #expect(after.output.contains("inactive"))
        let url = await ampctl(["url"])
        #expect(url.status == .exited(69) && url.output.contains("is not running"), "\(url.output)")
        let nowhere = await runIn("/", ampctlPath, ["status"], environment: env)
        #expect(nowhere.status == .exited(66) && nowhere.output.contains("no .amp above /"), "\(nowhere.output)")
    }
}

/// Runs a tool in `directory`.
func runIn(_ directory: String, _ executable: String, _ arguments: [String], environment: [String: String]) async -> ToolResult {
    await run("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", directory, executable] + arguments, environment: environment)
}

final class Counter: @unchecked Sendable {
    private var n = 0
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func add() { pthread_mutex_lock(&m); n += 1; pthread_mutex_unlock(&m) }
    var value: Int { pthread_mutex_lock(&m); defer { pthread_mutex_unlock(&m) }; return n }
}

@Suite("ampctl registry commands and doctor (built binary)")
struct AmpctlRegistryTests {
    @Test("init validates names and conflicts; forget keeps the data; doctor reports in JSON")
    func initForgetDoctor() async throws {
        let home = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let a = home + "/proj-a", b = home + "/proj b"
        try FileManager.default.createDirectory(atPath: a, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        let env = toolEnvironment(["XDG_CONFIG_HOME": home + "/config", "XDG_RUNTIME_DIR": home, "NO_COLOR": "1",
                                   "PATH": productsDirectory + ":/usr/local/bin:/usr/bin:/bin"])
        func ampctl(_ args: [String], in dir: String = "/") async -> ToolResult { await runIn(dir, ampctlPath, args, environment: env) }

        let bad = await ampctl(["init", a, "--name", "bad name"])
        #expect(bad.status == .exited(64) && bad.output.contains("--name bad name"), "\(bad.output)")
        let first = await ampctl(["init", a, "--json"])
        #expect(first.ok, "\(first.output)")
        let json = try JSONParser.parse(first.output.split(separator: "\n").drop { !$0.hasPrefix("{") }.joined(separator: "\n")).objectValue
        #expect(json?["name"] == .string("proj-a"))
        #expect(FileManager.default.fileExists(atPath: home + "/config/amp/registry/proj-a.toml"))
        #expect(FileManager.default.fileExists(atPath: a + "/.amp/metadb"))
        #expect(await ampctl(["init", a]).ok, "init is idempotent")
        let taken = await ampctl(["init", b, "--name", "proj-a"])
        #expect(taken.status == .exited(65) && taken.output.contains("taken by \(a)"), "\(taken.output)")
        let spaced = await ampctl(["init", b])
        #expect(spaced.ok && spaced.output.contains("amp@proj-b"), "a spaced directory gets a valid name: \(spaced.output)")
        let list = await ampctl(["list", "--json"])
        #expect(list.output.contains("\"proj-a\"") && list.output.contains("\"proj-b\"") && list.output.contains("\"inactive\""), "\(list.output)")
        let status = await ampctl(["status"], in: a + "/.amp/data")
        #expect(status.status == .exited(3) && status.output.contains("amp@proj-a"), "found from a subdirectory: \(status.output)")

        let doctor = await ampctl(["doctor", "--json"])
        let checks = try JSONParser.parse(doctor.output).arrayValue ?? []
        let postgres = checks.first { $0.objectValue?["check"] == .string("postgresql") }?.objectValue
        #expect(postgres?["ok"] == .bool(true), "\(doctor.output)")
        #expect(checks.contains { $0.objectValue?["check"] == .string("registry") && $0.objectValue?["detail"]?.stringValue?.contains("2 projects") == true })
        // A broken entry makes doctor fail and name the file.
        writeFile(home + "/config/amp/registry/broken.toml", "path = [\n")
        let failing = await ampctl(["doctor"])
        #expect(failing.status == .exited(1) && failing.output.contains("broken.toml"), "\(failing.output)")

        let forget = await ampctl(["forget", "proj-a"])
        #expect(forget.ok, "\(forget.output)")
        #expect(!FileManager.default.fileExists(atPath: home + "/config/amp/registry/proj-a.toml"))
        #expect(FileManager.default.fileExists(atPath: a + "/.amp/metadb"), "data kept")
        let unknown = await ampctl(["status", "proj-a"])
        #expect(unknown.status == .exited(66), "\(unknown.output)")
    }
}
