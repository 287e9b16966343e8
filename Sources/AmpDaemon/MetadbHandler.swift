#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import ServiceLifecycle
import Synchronization
import Varlink
import SystemSupport
import ThreadSupport

/// Serves `io.amp.Metadb` from the ``StatusBoard`` and, for database statistics and
/// commands, short libpq connections over the server's socket (on threads of their own:
/// libpq blocks). Dispatches on the typed ``MetadbCall``; each method is one function with
/// typed parameters, reply and ``MetadbError``.
struct MetadbHandler: VarlinkHandler {
    let board: StatusBoard
    let logger: Logger
    /// Every connection ampd keeps open, closed before a copy of the database they sit on and
    /// before the server stops.
    var sessions = LibPQSessions()
    /// One idle connection kept for the read-only queries (status statistics, the database
    /// list), so that `ampctl status` does not wait for a backend to start each time. Commands
    /// that change something (CREATE/DROP DATABASE) always use a connection of their own.
    var readOnlySession = LibPQSessionSlot()
    let sizeCache = DatabaseSizeCache()
    /// The thread the status statistics are read on (owned and joined by ``Daemon``): a
    /// query on a hung server costs this one thread, never one per `GetStatus`.
    var statistics: WorkerThread? = nil
    /// Snapshots: the store, the data directory, the project (for its git commit) and the
    /// queue to the service that stops and starts PostgreSQL around them.
    var snapshots: SnapshotContext? = nil
    /// Throwaway test databases and their pool.
    var testDatabases: TestDatabasePool? = nil
    /// The external server this ampd serves instead of a local cluster (`[postgres] url`).
    var external: ExternalServer? = nil

    func handle(_ call: VarlinkCall, stream: VarlinkReplyStream) async throws(VarlinkError) -> JSONObject {
        switch try MetadbCall(call) {
        case .getStatus:
            return try Metadb.GetStatus.encode(.init(status: await statusWithStatistics()))
        case .watchStatus:
            for await status in board.watch() {
                if Task.isCancelled { break }
                stream.send(try Metadb.WatchStatus.encode(.init(status: status)))
            }
            return try Metadb.WatchStatus.encode(.init(status: board.status))
        case .getConnection:
            return try Metadb.GetConnection.encode(try await mapped { () async throws(MetadbError) in try connection() })
        case .listDatabases:
            return try Metadb.ListDatabases.encode(.init(databases: try await mapped { () async throws(MetadbError) in try await databases() }))
        case .createDatabase(let p):
            return try Metadb.CreateDatabase.encode(.init(database: try await mapped { () async throws(MetadbError) in
                try await createDatabase(p.name, template: p.template, force: p.force ?? false)
            }))
        case .dropDatabase(let p):
            try await mapped { () async throws(MetadbError) in try await dropDatabase(p.name, force: p.force ?? false) }
            return try Metadb.DropDatabase.encode(NoParameters())
        case .createSnapshot(let p):
            return try Metadb.CreateSnapshot.encode(.init(snapshot: try await mapped { () async throws(MetadbError) in try await createSnapshot(p.name) }))
        case .listSnapshots:
            return try Metadb.ListSnapshots.encode(.init(snapshots: try await mapped { () async throws(MetadbError) in try context().store.list().map(Self.wire) }))
        case .restoreSnapshot(let p):
            try await mapped { () async throws(MetadbError) in try await restoreSnapshot(p.name) }
            return try Metadb.RestoreSnapshot.encode(NoParameters())
        case .getTopStatements(let p):
            return try Metadb.GetTopStatements.encode(.init(statements: try await mapped { () async throws(MetadbError) in
                try await topStatements(database: p.database, limit: p.limit ?? 20)
            }))
        case .resetStatementStatistics:
            try await mapped { () async throws(MetadbError) in _ = try await sql(try readyHandle(), "SELECT pg_stat_statements_reset()") }
            return try Metadb.ResetStatementStatistics.encode(NoParameters())
        case .resetCluster(let p):
            try await mapped { () async throws(MetadbError) in try await resetCluster(seed: p.seed ?? false) }
            return try Metadb.ResetCluster.encode(NoParameters())
        case .acquireTestDatabase(let p):
            let reply = try await mapped { () async throws(MetadbError) in try await acquireTestDatabase(p.template) }
            stream.send(try Metadb.AcquireTestDatabase.encode(reply))
            // The database lives as long as this call: until the caller's connection closes.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            if let pool = testDatabases, let handle = board.handle { _ = await pool.release(reply.database, handle: handle) }
            return try Metadb.AcquireTestDatabase.encode(reply)
        case .releaseTestDatabase(let p):
            try await mapped { () async throws(MetadbError) in
                let handle = try readyHandle()
                guard let pool = testDatabases, await pool.release(p.name, handle: handle) else { throw .noSuchDatabase(name: p.name) }
            }
            return try Metadb.ReleaseTestDatabase.encode(NoParameters())
        case .deleteSnapshot(let p):
            try await mapped { () async throws(MetadbError) in try deleteSnapshot(p.name) }
            return try Metadb.DeleteSnapshot.encode(NoParameters())
        }
    }

    /// Runs a method body; its ``MetadbError`` goes on the wire as the interface's error.
    private func mapped<T>(_ body: () async throws(MetadbError) -> T) async throws(VarlinkError) -> T {
        do {
            return try await body()
        } catch {
            throw error.varlinkError
        }
    }

    private func connection() throws(MetadbError) -> Metadb.GetConnection.Reply {
        let handle = try readyHandle()
        if let external {
            return .init(url: handle.url, socketDirectory: "", port: handle.port, database: handle.database, user: handle.user,
                         environment: external.environment(user: handle.user, database: handle.database), tls: external.usesTLS)
        }
        var environment = [
            "PGHOST": handle.socketDirectory, "PGPORT": "\(handle.port)", "PGDATABASE": handle.database, "DATABASE_URL": handle.url,
        ]
        if handle.url.contains("&user=") { environment["PGUSER"] = handle.user }
        let status = board.status
        return .init(url: handle.url, socketDirectory: handle.socketDirectory, port: handle.port, database: handle.database,
                     user: handle.user, environment: environment, listen: status.listen, tls: status.listen == nil ? nil : status.tls)
    }

    private static let databaseColumns = "datname, CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) ELSE 0 END, pg_get_userbyid(datdba)"

    private func databases() async throws(MetadbError) -> [MetadbDatabase] {
        let rows = try await sql(try readyHandle(), "SELECT \(Self.databaseColumns) FROM pg_database WHERE datallowconn ORDER BY datname", readOnly: true)
        return rows.map(database)
    }

    /// Creates a database for a client. Names amp reserves for databases it drops on its own
    /// (``Metadb/reservedDatabaseNameProblem(_:)``) are refused here, at the edge: a table
    /// made in one would be gone at the next start.
    private func createDatabase(_ name: String, template: String?, force: Bool) async throws(MetadbError) -> MetadbDatabase {
        if let reason = Metadb.databaseNameProblem(name) ?? Metadb.reservedDatabaseNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        let handle = try readyHandle()
        var clause = ""
        if let template {
            if let reason = Metadb.databaseNameProblem(template), template != "template0" { throw .invalidDatabaseName(name: template, reason: reason) }
            let quoted = "'\(template)'"  // checked above: a-z, 0-9, _ and -
            let sizeRows = try await sql(handle, "SELECT pg_database_size(\(quoted))::bigint", name: template, readOnly: true)
            guard let sizeText = sizeRows.first?.first ?? nil, let size = Int64(sizeText) else { throw .noSuchDatabase(name: template) }
            if force {
                _ = try await sql(handle, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(quoted) AND pid <> pg_backend_pid()", name: template)
            }
            let major = Int(handle.serverVersion.prefix { $0.isNumber }) ?? 0
            clause = " TEMPLATE \(LibPQ.quoteIdentifier(template))"
            if let strategy = CloneStrategy.choose(sizeBytes: size, serverMajor: major) { clause += " STRATEGY \(strategy.rawValue)" }
        }
        do {
            // ampd's own kept sessions must never be what blocks the copy.
            _ = try await sql(handle, "CREATE DATABASE \(LibPQ.quoteIdentifier(name))\(clause)", name: name, copying: template)
        } catch {
            if case .databaseInUse = error, let template { throw try await inUse(template, handle: handle) }
            throw error
        }
        sizeCache.invalidate()
        logger.info("created database \(name)\(template.map { " from \($0)" } ?? "")")
        let rows = try await sql(handle, "SELECT \(Self.databaseColumns) FROM pg_database WHERE datname = '\(name)'")  // name checked above: a-z, 0-9, _ and -
        guard let row = rows.first else { throw .noSuchDatabase(name: name) }
        return database(row)
    }

    /// The `DatabaseInUse` error for `name`, naming its other sessions.
    private func inUse(_ name: String, handle: PostgresHandle) async throws(MetadbError) -> MetadbError {
        let rows = try await sql(handle, """
            SELECT pid, usename, coalesce(nullif(application_name, ''), 'no application name'), to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS')
            FROM pg_stat_activity WHERE datname = '\(name)' AND pid <> pg_backend_pid() ORDER BY backend_start
            """)
        let sessions = rows.map { "PID \($0[0] ?? "?") (user \($0[1] ?? "?"), \($0[2] ?? "?"), since \($0[3] ?? "?"))" }
        return .databaseInUse(name: name, connections: max(1, sessions.count), sessions: sessions)
    }

    private func dropDatabase(_ name: String, force: Bool) async throws(MetadbError) {
        if let reason = Metadb.databaseNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        if Metadb.protectedDatabases.contains(name) { throw .protectedDatabase(name: name) }
        let handle = try readyHandle()
        _ = try await sql(handle, "DROP DATABASE \(LibPQ.quoteIdentifier(name))\(force ? " WITH (FORCE)" : "")", name: name)
        sizeCache.invalidate()
        logger.info("dropped database \(name)")
    }

    // MARK: - query insights

    /// The statements with the most total execution time, from pg_stat_statements (preloaded
    /// and created in the default database of every cluster amp makes).
    ///
    /// See <https://www.postgresql.org/docs/15/pgstatstatements.html>.
    private func topStatements(database: String?, limit: Int) async throws(MetadbError) -> [MetadbStatement] {
        let handle = try readyHandle()
        if let database, let reason = Metadb.databaseNameProblem(database), database != "postgres" { throw .invalidDatabaseName(name: database, reason: reason) }
        let n = min(max(limit, 1), 1000)
        if let database {
            let rows = try await sql(handle, "SELECT 1 FROM pg_database WHERE datname = '\(database)'", readOnly: true)  // checked above
            if rows.isEmpty { throw .noSuchDatabase(name: database) }
        }
        let filter = database.map { "WHERE d.datname = '\($0)'" } ?? ""  // checked above: a-z, 0-9, _ and -
        let rows = try await sql(handle, """
            SELECT d.datname, s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows
            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \(filter)
            ORDER BY s.total_exec_time DESC LIMIT \(n)
            """, readOnly: true)
        return rows.map { r in
            MetadbStatement(database: r[0] ?? "", query: r[1] ?? "", calls: Int64(r[2] ?? "") ?? 0, totalMs: Double(r[3] ?? "") ?? 0,
                            meanMs: Double(r[4] ?? "") ?? 0, rows: Int64(r[5] ?? "") ?? 0)
        }
    }

    // MARK: - test databases

    private func acquireTestDatabase(_ template: String?) async throws(MetadbError) -> Metadb.AcquireTestDatabase.Reply {
        guard let pool = testDatabases else { throw .queryFailed(message: "test databases are \(unavailableHere)", sqlstate: nil) }
        let handle = try readyHandle()
        let source = template ?? handle.database
        if let reason = Metadb.databaseNameProblem(source) { throw .invalidDatabaseName(name: source, reason: reason) }
        let (name, pooled) = try await pool.acquire(template: source, handle: handle)
        let c = try connection().forDatabase(name)
        logger.debug("handed out test database \(name) (template \(source), \(pooled ? "pooled" : "made now"))")
        return .init(database: name, url: c.url, environment: c.environment, pooled: pooled)
    }

    // MARK: - snapshots

    private func context() throws(MetadbError) -> SnapshotContext {
        guard let snapshots else { throw .snapshotFailed(message: "snapshots and resets are \(unavailableHere)") }
        return snapshots
    }

    /// Why a local-cluster feature is missing, in words.
    private var unavailableHere: String {
        external == nil ? "not available in this ampd"
            : "not available for an external server: they need the local cluster (remove [postgres] url from .amp/config.toml to use it again)"
    }

    static func wire(_ s: ClusterSnapshots.Snapshot) -> MetadbSnapshot {
        MetadbSnapshot(name: s.name, created: s.created, postgresVersion: s.postgresVersion, sizeBytes: Int64(clamping: s.sizeBytes), gitCommit: s.gitCommit)
    }

    static func mapped(_ failure: ClusterSnapshots.Failure) -> MetadbError {
        switch failure {
        case .exists(let name): return .snapshotExists(name: name)
        case .missing(let name): return .noSuchSnapshot(name: name)
        case .incompatible(let name, let snapshot, let cluster): return .snapshotIncompatible(name: name, snapshotVersion: snapshot, clusterVersion: cluster)
        case .io(let message): return .snapshotFailed(message: message)
        }
    }

    private func createSnapshot(_ requested: String?) async throws(MetadbError) -> MetadbSnapshot {
        let c = try context()
        let name = requested ?? ClusterSnapshots.defaultName()
        if let reason = Metadb.snapshotNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        // Anything under that name (a finished snapshot, or one whose manifest is unreadable)
        // is refused before PostgreSQL is stopped for the copy.
        if c.store.exists(name) { throw .snapshotExists(name: name) }
        _ = try readyHandle()
        let commit = await c.gitCommit()
        let made = Mutex<ClusterSnapshots.Snapshot?>(nil)
        let job = MaintenanceJob(description: "taking snapshot \(name)") {
            do throws(ClusterSnapshots.Failure) {
                let snapshot = try c.store.create(name, from: c.dataDirectory, gitCommit: commit)
                made.withLock { $0 = snapshot }
                return MaintenanceStep(failure: nil)
            } catch {
                return MaintenanceStep(failure: Self.mapped(error))
            }
        }
        if case .failure(let e) = await c.queue.perform(job) { throw e }
        guard let snapshot = made.withLock({ $0 }) else { throw .snapshotFailed(message: "the snapshot was not recorded; see `ampctl snapshot list` and the ampd log") }
        logger.info("took snapshot \(name) (\(snapshot.sizeBytes >> 20) MB)")
        return Self.wire(snapshot)
    }

    private func restoreSnapshot(_ name: String) async throws(MetadbError) {
        let c = try context()
        guard let snapshot = c.store.list().first(where: { $0.name == name }) else { throw .noSuchSnapshot(name: name) }
        let current = FileContents.text(c.dataDirectory + "/PG_VERSION")?.trimmingWhitespace ?? ""
        guard current == snapshot.postgresVersion else {
            throw .snapshotIncompatible(name: name, snapshotVersion: snapshot.postgresVersion, clusterVersion: current)
        }
        _ = try readyHandle()
        sessions.closeAll()
        sizeCache.invalidate()
        let job = MaintenanceJob(description: "restoring snapshot \(name)") {
            do throws(ClusterSnapshots.Failure) {
                let kept = try c.store.restore(name, into: c.dataDirectory)
                return MaintenanceStep(failure: nil) { started in
                    if started {
                        c.store.finishRestore(kept)
                        return nil
                    }
                    do throws(ClusterSnapshots.Failure) {
                        try c.store.undoRestore(kept, into: c.dataDirectory)
                        return .snapshotFailed(message: "the restored cluster did not start; the previous one is back and running (why: the ampd log, `ampctl logs`)")
                    } catch {
                        return Self.mapped(error)
                    }
                }
            } catch {
                return MaintenanceStep(failure: Self.mapped(error))
            }
        }
        if case .failure(let e) = await c.queue.perform(job) { throw e }
        logger.info("restored snapshot \(name)")
    }

    private func resetCluster(seed: Bool) async throws(MetadbError) {
        let c = try context()
        if seed && !c.seedsConfigured {
            throw .snapshotFailed(message: "no seed scripts are configured ([postgres] seed in .amp/config.toml), so --seed has nothing to run; nothing was changed: add them, or reset without --seed")
        }
        _ = try readyHandle()
        sessions.closeAll()
        sizeCache.invalidate()
        let job = MaintenanceJob(description: seed ? "resetting the cluster (with the seed scripts)" : "resetting the cluster") {
            let kept = parentDirectory(c.dataDirectory) + "/.before-reset-\(getpid())"
            try? removeTree(kept)
            guard rename(c.dataDirectory, kept) == 0 else {
                return MaintenanceStep(failure: .snapshotFailed(message: "cannot move the cluster aside: \(String(cString: strerror(errno))); the cluster is as it was"))
            }
            var step = MaintenanceStep(failure: nil) { ok in
                if ok {
                    InterruptedOperations.discardTree(kept)
                    return nil
                }
                if let problem = InterruptedOperations.putBack(kept, into: c.dataDirectory) {
                    return .snapshotFailed(message: "the new cluster failed, and the previous one is not back: \(problem)")
                }
                return nil
            }
            step.reseed = seed
            step.recreated = true
            return step
        }
        if case .failure(let e) = await c.queue.perform(job) { throw e }
        logger.info("reset the cluster\(seed ? " with the seed scripts" : "")")
    }

    private func deleteSnapshot(_ name: String) throws(MetadbError) {
        let c = try context()
        if let reason = Metadb.snapshotNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        do throws(ClusterSnapshots.Failure) { try c.store.delete(name) } catch { throw Self.mapped(error) }
        logger.info("deleted snapshot \(name)")
    }

    private func readyHandle() throws(MetadbError) -> PostgresHandle {
        guard let handle = board.handle else {
            let s = board.status
            throw .notReady(state: s.state.rawValue, phase: s.phase)
        }
        return handle
    }

    private func database(_ row: [String?]) -> MetadbDatabase {
        MetadbDatabase(name: row[0] ?? "", sizeBytes: Int64(row[1] ?? "") ?? 0, owner: row.count > 2 ? row[2] ?? "" : "")
    }

    /// Runs `text` on its own thread (a read-only query on the kept session; a copy of database
    /// `copying` with ampd's kept sessions closed first); maps PostgreSQL's errors to the
    /// interface's.
    private func sql(_ handle: PostgresHandle, _ text: String, name: String = "", readOnly: Bool = false, copying source: String? = nil) async throws(MetadbError) -> [[String?]] {
        let conninfo = handle.conninfo, session = readOnlySession, sessions = self.sessions, database = handle.database
        let result = await runOnThread(name: "amp-sql") {
            Result { () throws(LibPQError) in
                if readOnly { return try session.rows(conninfo, text) }
                guard let source else { return try LibPQ.rows(conninfo, text) }
                return try sessions.copying(source: source, keptOn: database) { () throws(LibPQError) in try LibPQ.rows(conninfo, text) }
            }
        }
        switch result {
        case .success(let rows): return rows
        case .failure(let e):
            switch e.sqlState {
            case "42P04"?: throw .databaseExists(name: name)
            case "3D000"?: throw .noSuchDatabase(name: name)
            case "55006"?:
                let n = e.message.split(separator: " ").compactMap { Int($0) }.first ?? 1
                throw .databaseInUse(name: name, connections: n, sessions: [])
            default:
                // No SQLSTATE: the connection failed; libpq's hint lines are left out.
                let message = e.sqlState == nil ? (external?.oneLine(e).message ?? e.message.split(separator: "\n").first.map(String.init) ?? e.message) : e.message
                throw .queryFailed(message: message, sqlstate: e.sqlState)
            }
        }
    }
    /// How long GetStatus waits for the statistics: a hung server must not hang the status.
    static let statisticsTimeout: Duration = .seconds(1)

    /// The board's status plus size and connection count, when the server answers within
    /// ``statisticsTimeout`` (the query goes on on the ``statistics`` thread until libpq's connect_timeout).
    /// The connection count is read on every call; the size (`pg_database_size`, a walk over
    /// every file of every database: 2–5 ms) at most every ``DatabaseSizeCache/maxAge``.
    private func statusWithStatistics() async -> MetadbStatus {
        var status = board.status
        guard let handle = board.handle else { return status }
        let race = Race<[[String?]]?>()
        let conninfo = handle.conninfo, session = readOnlySession
        let cachedSize = sizeCache.fresh(pid: Int(handle.pid))
        // On an external server, only the databases the role may connect to (the others fail).
        let filter = external == nil ? "" : " WHERE datallowconn AND has_database_privilege(oid, 'CONNECT')"
        let sizeColumn = cachedSize.map { "\($0)::bigint" } ?? "(SELECT sum(pg_database_size(oid)) FROM pg_database\(filter))::bigint"
        // Busy: the last query still hangs; the status goes out without statistics.
        guard let worker = self.statistics, worker.submit({
            race.resolve(try? session.rows(conninfo, """
                SELECT \(sizeColumn),
                       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())
                """))
        }) else { return status }
        let statistics = await race.wait(orAfter: Self.statisticsTimeout, nil)
        if let rows = statistics, let row = rows.first {
            status.databaseSizeBytes = row[0].flatMap { Int64($0) }
            status.connections = row.count > 1 ? row[1].flatMap { Int($0) } : nil
            if cachedSize == nil, let size = status.databaseSizeBytes { sizeCache.store(size, pid: Int(handle.pid)) }
        }
        return status
    }
}

/// What snapshots need: the store (`.amp/snapshots`), the data directory, the project's base
/// (for its git commit) and the queue to the service.
struct SnapshotContext: Sendable {
    var store: ClusterSnapshots
    var dataDirectory: String
    var projectBase: String
    var queue: MaintenanceQueue
    /// Whether `[postgres] seed` names scripts (a reset with seeds needs them).
    var seedsConfigured = false

    /// HEAD of the project when it is a git work tree.
    func gitCommit() async -> String? {
        guard access("/usr/bin/git", X_OK) == 0,
              let output = try? await runCommand("/usr/bin/git", ["-C", projectBase, "rev-parse", "HEAD"], environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"], timeout: .seconds(10)),
              output.succeeded
        else { return nil }
        let commit = output.text.trimmingWhitespace
        return commit.count == 40 || commit.count == 64 ? commit : nil
    }
}

/// The cluster's size as last measured, for ``DatabaseSizeCache/maxAge``: a status polled
/// by an editor or a `watch` loop does not walk the data directory each time. Kept per
/// postmaster PID, so a restarted server is measured afresh.
final class DatabaseSizeCache: Sendable {
    static let maxAge: Duration = .seconds(2)
    private let value = Mutex<(at: ContinuousClock.Instant, pid: Int, bytes: Int64)?>(nil)

    func fresh(pid: Int) -> Int64? {
        value.withLock { v in
            guard let v, v.pid == pid, ContinuousClock.now - v.at < Self.maxAge else { return nil }
            return v.bytes
        }
    }

    func store(_ bytes: Int64, pid: Int) { value.withLock { $0 = (ContinuousClock.now, pid, bytes) } }

    /// Forgets the size (a database was created or dropped).
    func invalidate() { value.withLock { $0 = nil } }
}

/// The varlink server as a service of the `ServiceGroup`: started first, stopped last (after
/// PostgreSQL), so `ampctl status` can watch the whole start and stop.
struct VarlinkService: Service {
    let server: VarlinkServer
    let board: StatusBoard

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await server.run()
        }
        board.finish()
        // RUNTIME/amp/NAME and RUNTIME/amp when empty (systemd removes its RuntimeDirectory
        // itself), and RUNTIME itself when it is ampd's /tmp/amp-UID fallback: rmdir fails
        // harmlessly while anything is left in them.
        let socketDirectory = parentDirectory(server.path), ampDirectory = parentDirectory(socketDirectory), runtime = parentDirectory(ampDirectory)
        rmdir(socketDirectory)
        if ampDirectory.hasSuffix("/amp") { rmdir(ampDirectory) }
        if runtime == "/tmp/amp-\(geteuid())" { rmdir(runtime) }
    }
}
