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

/// What the `io.amp.Metadb` methods do, on the ``StatusBoard`` and, for database statistics
/// and commands, short libpq connections over the server's socket (on threads of their own:
/// libpq blocks), with the SQL of ``ClusterQueries``. Snapshots and resets:
/// SnapshotOperations.swift; the status's statistics: StatusStatistics.swift.
struct MetadbOperations: Sendable {
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
    /// The continuous archive, when `[backup] archive` is on.
    var backups: BackupContext? = nil
    /// The metrics `GetMetrics` renders (the same as `[metrics] listen` serves).
    var metrics: MetricsCollector? = nil
    /// The history `GetHistory` returns (nil: none kept, as with an external server).
    var history: HistorySampler? = nil
    /// Throwaway test databases and their pool.
    var testDatabases: TestDatabasePool? = nil
    /// The external server this ampd serves instead of a local cluster (`[postgres] url`).
    var external: ExternalServer? = nil

    func connection() throws(MetadbError) -> Metadb.GetConnection.Reply {
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
                     user: handle.user, environment: environment, listen: status.listen, tls: status.listen == nil && status.pool?.listen == nil ? nil : status.tls,
                     poolPort: status.pool?.port, poolListen: status.pool?.listen)
    }

    /// Promotes a hot standby (`SELECT pg_promote(true, 60)`: it waits until the server
    /// takes writes); the status after. See
    /// <https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-RECOVERY-CONTROL>.
    func promote() async throws(MetadbError) -> MetadbStatus {
        let handle = try readyHandle()
        guard external == nil else { throw .replicationFailed(message: "this project uses an external server; promote it where it runs") }
        let rows = try await sql(handle, "SELECT pg_catalog.pg_is_in_recovery()", readOnly: true)
        guard rows.first?.first == "t" else {
            throw .replicationFailed(message: "\(board.status.project) is not a standby (it already takes writes); nothing to promote")
        }
        logger.notice("promoting the standby to a primary (pg_promote)")
        let done = try await sql(handle, "SELECT pg_catalog.pg_promote(true, 60)", readOnly: false)
        guard done.first?.first == "t" else {
            throw .replicationFailed(message: "PostgreSQL did not finish the promotion within 60 s; see the log (`journalctl --user -u amp@\(board.status.project)`) and call promote again")
        }
        logger.notice("promoted: \(board.status.project) is a primary now and takes writes")
        return await statusWithStatistics()
    }

    func databases() async throws(MetadbError) -> [MetadbDatabase] {
        let rows = try await sql(try readyHandle(), ClusterQueries.listDatabases, readOnly: true)
        return rows.map(database)
    }

    /// Creates a database for a client. Names amp reserves for databases it drops on its own
    /// (``Metadb/reservedDatabaseNameProblem(_:)``) are refused here, at the edge: a table
    /// made in one would be gone at the next start.
    func createDatabase(_ name: String, template: String?, force: Bool) async throws(MetadbError) -> MetadbDatabase {
        if let reason = Metadb.databaseNameProblem(name) ?? Metadb.reservedDatabaseNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        let handle = try readyHandle()
        var strategy: CloneStrategy? = nil
        if let template {
            if let reason = Metadb.databaseNameProblem(template), template != "template0" { throw .invalidDatabaseName(name: template, reason: reason) }
            let sizeRows = try await sql(handle, ClusterQueries.databaseSize(template), name: template, readOnly: true)
            guard let sizeText = sizeRows.first?.first ?? nil, let size = Int64(sizeText) else { throw .noSuchDatabase(name: template) }
            if force {
                _ = try await sql(handle, ClusterQueries.terminateSessions(on: template), name: template)
            }
            strategy = CloneStrategy.choose(sizeBytes: size, serverMajor: handle.serverMajor)
        }
        do {
            // ampd's own kept sessions must never be what blocks the copy.
            let create = ClusterQueries.createDatabase(name, template: template, strategy: strategy?.rawValue, serverMajor: handle.serverMajor)
            _ = try await sql(handle, create, name: name, copying: template)
        } catch {
            if case .databaseInUse = error, let template { throw try await inUse(template, handle: handle) }
            throw error
        }
        sizeCache.invalidate()
        logger.info("created database \(name)\(template.map { " from \($0)" } ?? "")")
        let rows = try await sql(handle, ClusterQueries.database(name))
        guard let row = rows.first else { throw .noSuchDatabase(name: name) }
        return database(row)
    }

    /// The `DatabaseInUse` error for `name`, naming its other sessions.
    func inUse(_ name: String, handle: PostgresHandle) async throws(MetadbError) -> MetadbError {
        let rows = try await sql(handle, ClusterQueries.sessions(on: name))
        let sessions = rows.map { "PID \($0[0] ?? "?") (user \($0[1] ?? "?"), \($0[2] ?? "?"), since \($0[3] ?? "?"))" }
        return .databaseInUse(name: name, connections: max(1, sessions.count), sessions: sessions)
    }

    func dropDatabase(_ name: String, force: Bool) async throws(MetadbError) {
        if let reason = Metadb.databaseNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        if Metadb.protectedDatabases.contains(name) { throw .protectedDatabase(name: name) }
        let handle = try readyHandle()
        _ = try await sql(handle, ClusterQueries.dropDatabase(name, force: force), name: name)
        sizeCache.invalidate()
        logger.info("dropped database \(name)")
    }

    // MARK: - query insights

    /// The statements with the most total execution time, from pg_stat_statements (preloaded
    /// and created in the default database of every cluster amp makes).
    ///
    /// See <https://www.postgresql.org/docs/15/pgstatstatements.html>.
    func topStatements(database: String?, limit: Int) async throws(MetadbError) -> [MetadbStatement] {
        let handle = try readyHandle()
        if let database, let reason = Metadb.databaseNameProblem(database), database != "postgres" { throw .invalidDatabaseName(name: database, reason: reason) }
        if let database {
            let rows = try await sql(handle, ClusterQueries.databaseExists(database), readOnly: true)
            if rows.isEmpty { throw .noSuchDatabase(name: database) }
        }
        let rows = try await sql(handle, ClusterQueries.topStatements(database: database, limit: limit), readOnly: true)
        return rows.map { r in
            MetadbStatement(database: r[0] ?? "", query: r[1] ?? "", calls: Int64(r[2] ?? "") ?? 0, totalMs: Double(r[3] ?? "") ?? 0,
                            meanMs: Double(r[4] ?? "") ?? 0, rows: Int64(r[5] ?? "") ?? 0)
        }
    }

    // MARK: - test databases

    func acquireTestDatabase(_ template: String?) async throws(MetadbError) -> Metadb.AcquireTestDatabase.Reply {
        guard let pool = testDatabases else { throw .queryFailed(message: "test databases are \(unavailableHere)", sqlstate: nil) }
        let handle = try readyHandle()
        let source = template ?? handle.database
        if let reason = Metadb.databaseNameProblem(source) { throw .invalidDatabaseName(name: source, reason: reason) }
        let (name, pooled) = try await pool.acquire(template: source, handle: handle)
        let c = try connection().forDatabase(name)
        logger.debug("handed out test database \(name) (template \(source), \(pooled ? "pooled" : "made now"))")
        return .init(database: name, url: c.url, environment: c.environment, pooled: pooled)
    }

    func readyHandle() throws(MetadbError) -> PostgresHandle {
        guard let handle = board.handle else {
            let s = board.status
            throw .notReady(state: s.state.rawValue, phase: s.phase)
        }
        return handle
    }

    func database(_ row: [String?]) -> MetadbDatabase {
        let r = ClusterQueries.DatabaseRow(row)
        return MetadbDatabase(name: r.name, sizeBytes: r.sizeBytes, owner: r.owner)
    }

    func resetStatementStatistics() async throws(MetadbError) {
        _ = try await sql(try readyHandle(), ClusterQueries.resetStatementStatistics)
    }

    /// Runs `text` on its own thread (a read-only query on the kept session; a copy of database
    /// `copying` with ampd's kept sessions closed first); maps PostgreSQL's errors to the
    /// interface's.
    func sql(_ handle: PostgresHandle, _ text: String, name: String = "", readOnly: Bool = false, copying source: String? = nil) async throws(MetadbError) -> [[String?]] {
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

}
