#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import ServiceLifecycle
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
            return try Metadb.CreateDatabase.encode(.init(database: try await mapped { () async throws(MetadbError) in try await createDatabase(p.name) }))
        case .dropDatabase(let p):
            try await mapped { () async throws(MetadbError) in try await dropDatabase(p.name, force: p.force ?? false) }
            return try Metadb.DropDatabase.encode(NoParameters())
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
        var environment = [
            "PGHOST": handle.socketDirectory, "PGPORT": "\(handle.port)", "PGDATABASE": handle.database, "DATABASE_URL": handle.url,
        ]
        if handle.url.contains("&user=") { environment["PGUSER"] = handle.user }
        return .init(url: handle.url, socketDirectory: handle.socketDirectory, port: handle.port, database: handle.database,
                     user: handle.user, environment: environment)
    }

    private static let databaseColumns = "datname, pg_database_size(oid), pg_get_userbyid(datdba)"

    private func databases() async throws(MetadbError) -> [MetadbDatabase] {
        let rows = try await sql(try readyHandle(), "SELECT \(Self.databaseColumns) FROM pg_database WHERE datallowconn ORDER BY datname")
        return rows.map(database)
    }

    private func createDatabase(_ name: String) async throws(MetadbError) -> MetadbDatabase {
        if let reason = Metadb.databaseNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        let handle = try readyHandle()
        _ = try await sql(handle, "CREATE DATABASE \(LibPQ.quoteIdentifier(name))", name: name)
        logger.info("created database \(name)")
        let rows = try await sql(handle, "SELECT \(Self.databaseColumns) FROM pg_database WHERE datname = '\(name)'")  // name checked above: a-z, 0-9, _ and -
        guard let row = rows.first else { throw .noSuchDatabase(name: name) }
        return database(row)
    }

    private func dropDatabase(_ name: String, force: Bool) async throws(MetadbError) {
        if let reason = Metadb.databaseNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        if Metadb.protectedDatabases.contains(name) { throw .protectedDatabase(name: name) }
        let handle = try readyHandle()
        _ = try await sql(handle, "DROP DATABASE \(LibPQ.quoteIdentifier(name))\(force ? " WITH (FORCE)" : "")", name: name)
        logger.info("dropped database \(name)")
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

    /// Runs `text` on its own thread; maps PostgreSQL's errors to the interface's.
    private func sql(_ handle: PostgresHandle, _ text: String, name: String = "") async throws(MetadbError) -> [[String?]] {
        let conninfo = handle.conninfo
        let result = await runOnThread(name: "amp-sql") { Result { () throws(LibPQError) in try LibPQ.rows(conninfo, text) } }
        switch result {
        case .success(let rows): return rows
        case .failure(let e):
            switch e.sqlState {
            case "42P04"?: throw .databaseExists(name: name)
            case "3D000"?: throw .noSuchDatabase(name: name)
            case "55006"?:
                let n = e.message.split(separator: " ").compactMap { Int($0) }.first ?? 1
                throw .databaseInUse(name: name, connections: n)
            default:
                throw .queryFailed(message: e.message, sqlstate: e.sqlState)
            }
        }
    }
    /// How long GetStatus waits for the statistics: a hung server must not hang the status.
    static let statisticsTimeout: Duration = .seconds(1)

    /// The board's status plus size and connection count, when the server answers within
    /// ``statisticsTimeout`` (the query's thread ends by libpq's connect_timeout after that).
    private func statusWithStatistics() async -> MetadbStatus {
        var status = board.status
        guard let handle = board.handle else { return status }
        let race = Race<[[String?]]?>()
        race.resolve(nil, after: Self.statisticsTimeout)
        let conninfo = handle.conninfo
        do {
            try startDetachedThread(name: "amp-statistics") {
                race.resolve(try? LibPQ.rows(conninfo, """
                    SELECT (SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint,
                           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())
                    """))
            }
        } catch {
            race.resolve(nil)
        }
        let statistics = await race.wait()
        if let rows = statistics, let row = rows.first {
            status.databaseSizeBytes = row[0].flatMap { Int64($0) }
            status.connections = row.count > 1 ? row[1].flatMap { Int($0) } : nil
        }
        return status
    }
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
        func parent(_ path: String) -> String { String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        let socketDirectory = parent(server.path), ampDirectory = parent(socketDirectory), runtime = parent(ampDirectory)
        rmdir(socketDirectory)
        if ampDirectory.hasSuffix("/amp") { rmdir(ampDirectory) }
        if runtime == "/tmp/amp-\(geteuid())" { rmdir(runtime) }
    }
}
