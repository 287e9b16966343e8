#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import FoundationEssentials
import Synchronization
import Testing
import Varlink

@Suite("ampd run (built binary, real PostgreSQL)", .serialized, unprivileged)
struct AmpdRunTests {
    @Test("fresh amp dir: layout created, ready line with URL, SELECT 1, SIGTERM stops cleanly")
    func freshStartAndStop() async throws {
        let f = AmpdFixture()
        let run = try await f.start(["run", "--amp-dir", f.base])
        #expect(await run.waitForLine("ready in "), "\(run.text)")
        let url = try #require(run.url)
        #expect(url == "postgresql:///postgres?host=" + PostgresHandle.percentEncode(f.metadb))
        #expect(run.text.contains("psql '\(url)'"))
        #expect(try LibPQ.query(url, "SELECT 1") == ["1"])
        for sub in ["data", "providers", "manifests", "metadb"] {
            var st = stat()
            #expect(stat(f.ampDir + "/" + sub, &st) == 0 && (st.st_mode & 0o777) == 0o700, "\(sub)")
        }
        let pid = try #require(run.process).pid
        kill(pid, SIGTERM)
        let status = await run.process?.wait(timeout: .seconds(30))
        #expect(status == .exited(0), "\(run.text)")
        #expect(readFile(f.metadb + "/postmaster.pid") == nil)
    }

    @Test("restart keeps data and does not run initdb again")
    func restartKeepsData() async throws {
        let f = AmpdFixture()
        let first = try await f.start(["run"], environment: ["AMP_DIR": f.base])
        #expect(await first.waitForLine("ready in "))
        let url = try #require(first.url)
        _ = try LibPQ.query(url, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        kill(try #require(first.process).pid, SIGTERM)
        #expect(await first.process?.wait(timeout: .seconds(30)) == .exited(0))
        let version = readFile(f.metadb + "/PG_VERSION")

        let second = try await f.start(["run"], environment: ["AMP_DIR": f.base])
        #expect(await second.waitForLine("ready in "))
        #expect(!second.text.contains("initialising a new cluster"))
        #expect(try LibPQ.query(url, "SELECT v FROM kept") == ["42"])
        #expect(readFile(f.metadb + "/PG_VERSION") == version)
        kill(try #require(second.process).pid, SIGTERM)
        #expect(await second.process?.wait(timeout: .seconds(30)) == .exited(0))
    }

    @Test("a second ampd on the same amp dir fails at once naming the PID; another amp dir runs beside it")
    func oneServerPerAmpDir() async throws {
        let f = AmpdFixture()
        let first = try await f.start(["run", "--amp-dir", f.base])
        #expect(await first.waitForLine("ready in "))
        let firstPid = try #require(first.process).pid
        let started = ContinuousClock.now
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base], timeout: .seconds(10))
        #expect(status == .exited(75))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(lines.joined().contains("PID \(firstPid)"), "\(lines)")

        let other = AmpdFixture()
        let second = try await other.start(["run", "--amp-dir", other.base])
        #expect(await second.waitForLine("ready in "))
        #expect(try LibPQ.query(try #require(second.url), "SELECT 2") == ["2"])
        #expect(try LibPQ.query(try #require(first.url), "SELECT 1") == ["1"])
    }

    @Test("ampd killed with SIGKILL: no postgres survives, the next start succeeds")
    func sigkillAmpd() async throws {
        let f = AmpdFixture()
        let run = try await f.start(["run", "--amp-dir", f.base])
        #expect(await run.waitForLine("ready in "))
        let pidText = try #require(readFile(f.metadb + "/postmaster.pid"))
        let postmaster = try #require(PostmasterPidFile.parse(pidText)).pid
        #expect(isAlive(postmaster))
        kill(try #require(run.process).pid, SIGKILL)
        #expect(await run.process?.wait(timeout: .seconds(10)) == .signaled(SIGKILL))
        #expect(await eventually { !isAlive(postmaster) }, "postmaster \(postmaster) outlived ampd")

        let again = try await f.start(["run", "--amp-dir", f.base])
        #expect(await again.waitForLine("ready in "), "\(again.text)")
        #expect(try LibPQ.query(try #require(again.url), "SELECT 1") == ["1"])
    }

    @Test("postmaster killed with SIGKILL 10 times: ampd restarts it each time, data intact, the board says restarting and never ready with a dead postmaster")
    func postmasterRestarts() async throws {
        let f = AmpdFixture()
        let run = try await f.start(["run", "--amp-dir", f.base])
        try #require(await run.waitForLine("ready in "), "\(run.text)")
        let url = try #require(run.url)
        _ = try LibPQ.query(url, "CREATE TABLE t (n int)")
        let statuses = StatusLog()
        let watcher = try VarlinkClient.connect(path: f.socket)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await reply in watcher.stream("io.amp.Metadb.WatchStatus") {
                    guard let status = reply["status"]?.objectValue else { continue }
                    statuses.append(state: status["state"]?.stringValue ?? "?", postmaster: status["postmaster_pid"]?.intValue.map { pid_t($0) })
                }
            }
            var recoveries: [Duration] = []
            for round in 1...10 {
                let pid = try #require(PostmasterPidFile.parse(readFile(f.metadb + "/postmaster.pid") ?? "")).pid
                // Acknowledged before the kill: must survive it (synchronous_commit=on).
                _ = try LibPQ.query(url, "INSERT INTO t VALUES (\(round))")
                let killedAt = ContinuousClock.now
                kill(pid, SIGKILL)
                let back = await eventually(timeout: .seconds(15)) {
                    guard let now = PostmasterPidFile.parse(readFile(f.metadb + "/postmaster.pid") ?? "")?.pid, now != pid else { return false }
                    return (try? LibPQ.query(url, "SELECT count(*) FROM t")) == ["\(round)"]
                }
                #expect(back, "round \(round): \(run.text.suffix(2000))")
                recoveries.append(ContinuousClock.now - killedAt)
                // Served for more than RestartPolicy.stableAfter: the next crash restarts at once.
                try await Task.sleep(for: .milliseconds(1100))
            }
            print("figure: postmaster SIGKILL x10 under ampd run: recoveries \(recoveries.map { "\($0)" }.joined(separator: ", "))")
            #expect(run.process?.exitStatus == nil, "ampd stays up: \(run.text.suffix(2000))")
            let status = try await VarlinkClient.connect(path: f.socket).call("io.amp.Metadb.GetStatus", [:], timeout: .seconds(10))
            #expect(status["status"]?.objectValue?["restarts"] == .int(10))
            #expect(status["status"]?.objectValue?["state"] == .string("ready"))
            let seen = statuses.entries
            // After each kill the board went through a non-ready state before the next ready.
            // (WatchStatus may coalesce changes a slow client has not read yet, so not every
            // postmaster's ready status need arrive; those that do must be separated.)
            let readyPIDs = seen.filter { $0.state == "ready" }.compactMap(\.postmaster)
            #expect(Set(readyPIDs).count >= 2, "ready statuses of several postmasters: \(seen)")
            for (i, entry) in seen.enumerated() where entry.state == "ready" && i > 0 {
                if let previous = seen[..<i].last(where: { $0.state == "ready" }), previous.postmaster != entry.postmaster {
                    let since = seen[..<i].lastIndex(where: { $0.state == "ready" }) ?? 0
                    #expect(seen[since..<i].contains { $0.state == "starting" }, "restarting shown between \(previous) and \(entry)")
                }
            }
            #expect(run.text.contains("restarting PostgreSQL"))
            group.cancelAll()
        }
        kill(try #require(run.process).pid, SIGTERM)
        #expect(await run.process?.wait(timeout: .seconds(30)) == .exited(0))
    }

    @Test("malformed config.toml: exit 78 naming file and line, nothing in the amp dir touched")
    func malformedConfig() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[postgres]\nlocale = \"C\"\nstart_timeout = [\n")
        let before = snapshot(f.ampDir)
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(status == .exited(78))
        let text = lines.joined(separator: "\n")
        #expect(text.contains(f.ampDir + "/config.toml:"), "\(text)")
        #expect(snapshot(f.ampDir) == before)

        writeFile(f.ampDir + "/config.toml", "[postgres]\nlocale = \"C\"\n\nstop_timeout = \"whenever\"\n")
        let before2 = snapshot(f.ampDir)
        let (status2, lines2) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(status2 == .exited(78))
        #expect(lines2.joined().contains("config.toml:4: postgres.stop_timeout"), "\(lines2)")
        #expect(snapshot(f.ampDir) == before2)
    }

    @Test("bad flag value: exit 64 naming the flag; bad AMP_* variable: exit 78 naming it")
    func badFlagsAndVariables() async throws {
        let f = AmpdFixture()
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base, "--start-timeout", "soonish"])
        #expect(status == .exited(64))
        #expect(lines.joined().contains("--start-timeout soonish"))
        let (status2, lines2) = try await f.runToEnd(["run", "--amp-dir", f.base], environment: ["AMP_PG_STOP_TIMEOUT": "x"])
        #expect(status2 == .exited(78))
        #expect(lines2.joined().contains("AMP_PG_STOP_TIMEOUT=x"))
        #expect(readFile(f.ampDir + "/ampd.lock") == nil, "configuration errors must not touch the amp dir")
    }

    @Test("missing binaries: exit 69 with where it looked and how to install")
    func missingBinaries() async throws {
        let f = AmpdFixture()
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base, "--bin-dir", "/nonexistent/bin"])
        #expect(status == .exited(69))
        #expect(lines.joined().contains("/nonexistent/bin"))
        #expect(readFile(f.metadb + "/PG_VERSION") == nil)
    }

    @Test("major-version mismatch: exit 65 naming both versions, data untouched")
    func versionMismatch() async throws {
        let f = AmpdFixture()
        let run = try await f.start(["run", "--amp-dir", f.base])
        #expect(await run.waitForLine("ready in "))
        kill(try #require(run.process).pid, SIGTERM)
        _ = await run.process?.wait(timeout: .seconds(30))
        writeFile(f.metadb + "/PG_VERSION", "12\n")
        let before = snapshot(f.metadb)
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(status == .exited(65))
        #expect(lines.joined().contains("PostgreSQL 12"), "\(lines)")
        #expect(snapshot(f.metadb) == before)
    }

    @Test("a bogus LANG/LC_ALL does not break initdb or the server")
    func bogusLocale() async throws {
        let f = AmpdFixture()
        let run = try await f.start(["run", "--amp-dir", f.base], environment: ["LANG": "xx_YY.BOGUS-8", "LC_ALL": "zz_ZZ.nope", "LC_MESSAGES": "qq"])
        #expect(await run.waitForLine("ready in "), "\(run.text)")
        #expect(try LibPQ.query(try #require(run.url), "SHOW lc_messages") == ["C"])
    }

    @Test("settings: file < environment < command line; locale, encoding, initdb args applied")
    func settingsPrecedence() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", """
            [postgres]
            locale = "C.UTF-8"
            initdb_args = ["--data-checksums"]
            mystery = 1

            [postgres.parameters]
            work_mem = "4MB"
            maintenance_work_mem = "70MB"
            temp_buffers = "9MB"
            """)
        let run = try await f.start(
            ["run", "--amp-dir", f.base, "-c", "work_mem=6MB", "--set", "log_min_messages=notice", "--encoding", "UTF8"],
            environment: ["AMP_PG_PARAM_work_mem": "5MB", "AMP_PG_PARAM_maintenance_work_mem": "80MB"])
        #expect(await run.waitForLine("ready in "), "\(run.text)")
        let url = try #require(run.url)
        #expect(try LibPQ.query(url, "SHOW work_mem") == ["6MB"])
        #expect(try LibPQ.query(url, "SHOW maintenance_work_mem") == ["80MB"])
        #expect(try LibPQ.query(url, "SHOW temp_buffers") == ["9MB"])
        #expect(try LibPQ.query(url, "SHOW data_checksums") == ["on"])
        #expect(try LibPQ.query(url, "SELECT datcollate || '/' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'postgres'") == ["C.UTF-8/UTF8"])
        #expect(run.text.contains("config.toml:4: unknown key 'postgres.mystery'"))
        // pg_controldata agrees on checksums (a binary of the same installation).
        let control = try await runTool(PostgresBinaries.locate(explicit: nil, searchPath: getenv("PATH").map { String(cString: $0) }).path("pg_controldata"), [f.metadb])
        #expect(control.contains("Data page checksum version:           1"), "\(control)")
    }

    @Test("an amp dir deep enough to overflow the socket path limit works")
    func deepAmpDir() async throws {
        let f = AmpdFixture()
        var deep = f.base
        for _ in 0..<12 {
            deep += "/nested-dir"
            mkdir(deep, 0o700)
        }
        let run = try await f.start(["run", "--amp-dir", deep], environment: ["XDG_RUNTIME_DIR": f.base + "/run"])
        mkdir(f.base + "/run", 0o700)
        #expect(await run.waitForLine("ready in "), "\(run.text)")
        let url = try #require(run.url)
        #expect(url.contains(PostgresHandle.percentEncode(f.base + "/run/amp/pg-")))
        #expect(run.text.contains("more than the kernel's limit"))
        #expect(try LibPQ.query(url, "SELECT 1") == ["1"])
        let socketDirectory = try #require(url.firstRange(of: "pg-").map { f.base + "/run/amp/" + url[$0.lowerBound...].prefix { $0 != "&" } })
        #expect(access(socketDirectory, F_OK) == 0)
        kill(try #require(run.process).pid, SIGTERM)
        #expect(await run.process?.wait(timeout: .seconds(30)) == .exited(0))
        #expect(access(socketDirectory, F_OK) != 0, "the fallback socket directory \(socketDirectory) is removed at stop")
    }
}

/// Runs a tool to its end and returns its output.
func runTool(_ path: String, _ arguments: [String]) async throws -> String {
    let out = OutputBox()
    let child = try await ChildProcess.spawn(SpawnConfiguration(
        executable: path, arguments: arguments, environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"], output: .lines { out.append($0) }))
    _ = await child.wait()
    await child.waitForOutput(timeout: .seconds(2))
    return out.text
}

final class OutputBox: @unchecked Sendable {
    private var lines: [String] = []
    private let lock = NSLockLike()
    func append(_ l: [String]) { lock.withLock { lines += l } }
    var text: String { lock.withLock { lines.joined(separator: "\n") } }
}

final class NSLockLike: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return body()
    }
}

/// Names, sizes, modification times and modes of every file below `path`.
func snapshot(_ path: String) -> [String: String] {
    var out: [String: String] = [:]
    func walk(_ p: String) {
        guard let d = opendir(p) else { return }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name == "." || name == ".." { continue }
            let full = p + "/" + name
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            out[full] = "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_mode)"
            if (st.st_mode & S_IFMT) == S_IFDIR { walk(full) }
        }
    }
    walk(path)
    return out
}

@Suite("template cache (built ampd, real PostgreSQL)", .serialized, unprivileged)
struct TemplateCacheTests {
    /// Runs ampd for `base` until ready, then stops it; returns its output.
    func firstStart(_ f: AmpdFixture, base: String, cache: String, extra: [String] = []) async throws -> String {
        let run = try await f.start(["run", "--amp-dir", base] + extra, environment: ["XDG_CACHE_HOME": cache])
        #expect(await run.waitForLine("ready in "), "\(run.text)")
        run.process?.signal(SIGTERM)
        #expect(await run.process?.wait(timeout: .seconds(30)) == .exited(0))
        return run.text
    }

    @Test("concurrent first starts build one template; later first starts copy it; clusters work")
    func concurrentFirstStarts() async throws {
        let f = AmpdFixture()
        let cache = f.base + "/cache"
        let a = f.base + "/a", b = f.base + "/b", c = f.base + "/c"
        for d in [a, b, c] { mkdir(d, 0o755) }
        async let first = firstStart(f, base: a, cache: cache)
        async let second = firstStart(f, base: b, cache: cache)
        let (ta, tb) = try await (first, second)
        let built = [ta, tb].filter { $0.contains("built cluster template") }.count
        #expect(built == 1, "exactly one of two concurrent first starts builds the template")
        #expect(ta.contains("cluster created from the template cache") && tb.contains("cluster created from the template cache"))
        let tc = try await firstStart(f, base: c, cache: cache)
        #expect(tc.contains("copy=copied") || tc.contains("copy=reflinked"), "\(tc)")
        #expect(!tc.contains("initialising a new cluster"))
        for d in [a, b, c] { #expect(readFile(d + "/.amp/metadb/PG_VERSION")?.hasPrefix("15") == true || FileManager.default.fileExists(atPath: d + "/.amp/metadb/PG_VERSION")) }
        // The copies are real, separate clusters: data written to one is not in another.
        let run = try await f.start(["run", "--amp-dir", a], environment: ["XDG_CACHE_HOME": cache])
        #expect(await run.waitForLine("ready in "))
        _ = try LibPQ.query(try #require(run.url), "CREATE TABLE only_a (x int)")
        run.process?.signal(SIGTERM)
        _ = await run.process?.wait(timeout: .seconds(30))
        let runB = try await f.start(["run", "--amp-dir", b], environment: ["XDG_CACHE_HOME": cache])
        #expect(await runB.waitForLine("ready in "))
        #expect(try LibPQ.query(try #require(runB.url), "SELECT count(*) FROM pg_tables WHERE tablename = 'only_a'").first == "0")
        runB.process?.signal(SIGTERM)
        _ = await runB.process?.wait(timeout: .seconds(30))
    }

    @Test("a damaged template is rebuilt, never copied; --no-template-cache runs initdb")
    func damagedAndOptOut() async throws {
        let f = AmpdFixture()
        let cache = f.base + "/cache"
        let a = f.base + "/a", b = f.base + "/b", c = f.base + "/c"
        for d in [a, b, c] { mkdir(d, 0o755) }
        _ = try await firstStart(f, base: a, cache: cache)
        // Templates only: not their locks, nor the version cache (`versions/`) beside them.
        let templates = try FileManager.default.contentsOfDirectory(atPath: cache + "/amp/templates")
            .filter { !$0.hasSuffix(".lock") && $0 != "versions" && !$0.hasPrefix(".") }
        let template = cache + "/amp/templates/" + (try #require(templates.first))
        // Damage: a truncated file in the template.
        #expect(truncate(template + "/data/PG_VERSION", 0) == 0)
        let tb = try await firstStart(f, base: b, cache: cache)
        #expect(tb.contains("is damaged"), "\(tb)")
        #expect(tb.contains("built cluster template"))
        #expect(readFile(b + "/.amp/metadb/PG_VERSION")?.isEmpty == false, "the copy is whole")
        let tc = try await firstStart(f, base: c, cache: cache, extra: ["--no-template-cache"])
        #expect(tc.contains("initialising a new cluster") && !tc.contains("template cache"), "\(tc)")
    }
}

/// Statuses seen through WatchStatus.
final class StatusLog: Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        var state: String
        var postmaster: pid_t?
        var description: String { "\(state)/\(postmaster.map(String.init) ?? "-")" }
    }
    private let storage = Mutex<[Entry]>([])
    func append(state: String, postmaster: pid_t?) { storage.withLock { $0.append(Entry(state: state, postmaster: postmaster)) } }
    var entries: [Entry] { storage.withLock { $0 } }
}
