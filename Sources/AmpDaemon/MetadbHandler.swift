#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import ServiceLifecycle
import Varlink

/// Serves `io.amp.Metadb` from the ``StatusBoard`` and, for database statistics and
/// commands, short libpq connections over the server's socket (on threads of their own:
/// libpq blocks).
struct MetadbHandler: VarlinkHandler {
    let board: StatusBoard
    let logger: Logger

    func handle(_ call: VarlinkCall, stream: VarlinkReplyStream) async throws(VarlinkError) -> JSONObject {
        switch call.methodName {
        case "GetStatus":
            return ["status": .object(await statusWithStatistics().json)]
        case "WatchStatus":
            for await status in board.watch() {
                if Task.isCancelled { break }
                stream.send(["status": .object(status.json)])
            }
            return ["status": .object(board.status.json)]
        case "GetConnection":
            let handle = try readyHandle()
            var environment: JSONObject = [
                "PGHOST": .string(handle.socketDirectory), "PGPORT": .string("\(handle.port)"),
                "PGDATABASE": .string(handle.database), "DATABASE_URL": .string(handle.url),
            ]
            if handle.url.contains("&user=") { environment["PGUSER"] = .string(handle.user) }
            return [
                "url": .string(handle.url), "socket_dir": .string(handle.socketDirectory), "port": .int(Int64(handle.port)),
                "database": .string(handle.database), "user": .string(handle.user), "environment": .object(environment),
            ]
        case "ListDatabases":
            let handle = try readyHandle()
            let rows = try await sql(handle, """
                SELECT datname, pg_database_size(oid), pg_get_userbyid(datdba) FROM pg_database
                WHERE datallowconn ORDER BY datname
                """)
            return ["databases": .array(rows.map { .object(database($0).json) })]
        case "CreateDatabase":
            let name = call.parameters["name"]?.stringValue ?? ""
            if let reason = Metadb.databaseNameProblem(name) {
                throw VarlinkError(Metadb.invalidDatabaseName, ["name": .string(name), "reason": .string(reason)])
            }
            let handle = try readyHandle()
            _ = try await sql(handle, "CREATE DATABASE \(LibPQ.quoteIdentifier(name))", name: name)
            logger.info("created database \(name)")
            let rows = try await sql(handle, "SELECT datname, pg_database_size(oid), pg_get_userbyid(datdba) FROM pg_database WHERE datname = '\(name)'")
            guard let row = rows.first else { throw VarlinkError(Metadb.noSuchDatabase, ["name": .string(name)]) }
            return ["database": .object(database(row).json)]
        case "DropDatabase":
            let name = call.parameters["name"]?.stringValue ?? ""
            if let reason = Metadb.databaseNameProblem(name) {
                throw VarlinkError(Metadb.invalidDatabaseName, ["name": .string(name), "reason": .string(reason)])
            }
            if Metadb.protectedDatabases.contains(name) { throw VarlinkError(Metadb.protectedDatabase, ["name": .string(name)]) }
            let handle = try readyHandle()
            let force = call.parameters["force"]?.boolValue ?? false
            _ = try await sql(handle, "DROP DATABASE \(LibPQ.quoteIdentifier(name))\(force ? " WITH (FORCE)" : "")", name: name)
            logger.info("dropped database \(name)")
            return [:]
        default:
            throw .methodNotImplemented(call.method)
        }
    }

    private func readyHandle() throws(VarlinkError) -> PostgresHandle {
        guard let handle = board.handle else {
            let s = board.status
            throw VarlinkError(Metadb.notReady, ["state": .string(s.state.rawValue), "phase": .string(s.phase)])
        }
        return handle
    }

    private func database(_ row: [String?]) -> MetadbDatabase {
        MetadbDatabase(name: row[0] ?? "", sizeBytes: Int64(row[1] ?? "") ?? 0, owner: row.count > 2 ? row[2] ?? "" : "")
    }

    /// Runs `text` on its own thread; maps PostgreSQL's errors to the interface's.
    private func sql(_ handle: PostgresHandle, _ text: String, name: String = "") async throws(VarlinkError) -> [[String?]] {
        let conninfo = handle.conninfo
        let result = await runOnThread(name: "amp-sql") { Result { () throws(LibPQError) in try LibPQ.rows(conninfo, text) } }
        switch result {
        case .success(let rows): return rows
        case .failure(let e):
            switch e.sqlState {
            case "42P04"?: throw VarlinkError(Metadb.databaseExists, ["name": .string(name)])
            case "3D000"?: throw VarlinkError(Metadb.noSuchDatabase, ["name": .string(name)])
            case "55006"?:
                let n = Int64(e.message.split(separator: " ").compactMap { Int64($0) }.first ?? 1)
                throw VarlinkError(Metadb.databaseInUse, ["name": .string(name), "connections": .int(n)])
            default:
                var p: JSONObject = ["message": .string(e.message)]
                if let code = e.sqlState { p["sqlstate"] = .string(code) }
                throw VarlinkError(Metadb.queryFailed, p)
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
        // The socket's directory, when empty (systemd removes its RuntimeDirectory itself).
        if let slash = server.path.lastIndex(of: "/") { rmdir(String(server.path[..<slash])) }
    }
}
