#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import SystemSupport

/// Why moving a database between servers (or into a file) failed, in one line a person can
/// act on. `code` decides the exit status; nothing is left on the receiving side.
public struct TransferError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The database to copy does not exist, or the target exists and may not be replaced, or
        /// a file is not a dump.
        case data
        /// The file to read does not exist.
        case noInput
        /// A client tool is missing or cannot run.
        case unavailable
        /// A tool, a query or a file operation failed.
        case failed
        /// A file cannot be written.
        case cannotCreate
        /// A server refused the credentials.
        case refused
        /// The task was cancelled (a signal) between steps.
        case interrupted
    }

    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// A server a database moves from or to: how to reach one of its databases, and its name in
/// messages. The local cluster, a private server on it, an external server.
public struct DatabaseServer: Sendable {
    public var display: String
    /// A libpq connection string for a database on this server.
    public var conninfo: @Sendable (String) -> String

    public init(display: String, conninfo: @escaping @Sendable (String) -> String) {
        self.display = display
        self.conninfo = conninfo
    }

    /// A server on a Unix socket (`directory`, `port`), for any of its databases.
    public static func socket(
        display: String, directory: String, port: Int, user: String? = nil, application: String? = nil, connectTimeout: Int = 10
    ) -> DatabaseServer {
        DatabaseServer(display: display) { database in
            LibPQ.socketConninfo(directory: directory, port: port, database: database, user: user, application: application, connectTimeout: connectTimeout)
        }
    }

    /// Runs `sql` in `database`; a failure names this server and libpq's first line.
    public func rows(_ sql: String, in database: String = "postgres") throws(TransferError) -> [[String?]] {
        do { return try LibPQ.rows(conninfo(database), sql) } catch {
            throw TransferError(.failed, "\(display): \(error.message.split(separator: "\n").first.map(String.init) ?? error.message)")
        }
    }

    /// Whether database `name` exists (`name` must be a checked name: a-z, 0-9, _ and -).
    public func hasDatabase(_ name: String) throws(TransferError) -> Bool {
        try rows("SELECT 1 FROM pg_database WHERE datname = \(LibPQ.quoteLiteral(name))").count == 1
    }

    /// The size of database `name` in bytes (0 when it cannot be read).
    public func size(of name: String) -> Int64 {
        ((try? rows("SELECT pg_database_size(\(LibPQ.quoteLiteral(name)))"))?.first?.first ?? nil).flatMap { Int64($0) } ?? 0
    }

    /// Every database that accepts connections, with its comment and size, by name.
    public func databasesWithComments() throws(TransferError) -> [(name: String, comment: String?, size: Int64)] {
        try rows("SELECT datname, shobj_description(oid, 'pg_database'), pg_database_size(oid) FROM pg_database WHERE datallowconn ORDER BY 1")
            .compactMap { row in row[0].map { ($0, row[1], Int64(row[2] ?? "") ?? 0) } }
    }

    /// Sets the comment of database `name` (`COMMENT ON DATABASE`).
    public func setComment(_ comment: String, on name: String) throws(TransferError) {
        _ = try rows("COMMENT ON DATABASE \(LibPQ.quoteIdentifier(name)) IS \(LibPQ.quoteLiteral(comment))")
    }

    /// The server's major version (`server_version_num` / 10000), through `conninfo` as given.
    public static func majorVersion(conninfo: String) throws(LibPQError) -> Int {
        (Int(try LibPQ.query(conninfo, "SHOW server_version_num").first.flatMap { $0 } ?? "") ?? 0) / 10000
    }
}

/// One database moved into a server through a temporary database that is renamed at the end
/// (`ampctl import`, `push`, `pull`): the target appears whole or not at all, and a failure at
/// any step drops the temporary database again. The temporary name carries the PID of the
/// process that made it (`TARGET__import_PID`), so a leftover of a process that is gone can be
/// recognised and dropped (ampd does at its start).
public struct DatabaseTransfer: Sendable {
    /// The receiving server.
    public let server: DatabaseServer
    /// The database's name when done.
    public let target: String
    /// The temporary database: the target's name (at most 40 bytes of it), `suffix` and the PID.
    public let temporary: String

    public init(into target: String, on server: DatabaseServer, temporarySuffix suffix: String, pid: Int32 = getpid()) {
        self.server = server
        self.target = target
        self.temporary = "\(target.prefix(40))\(suffix)\(pid)"
    }

    /// Creates the temporary database.
    public func create() throws(TransferError) {
        do { _ = try LibPQ.rows(server.conninfo("postgres"), "CREATE DATABASE \(LibPQ.quoteIdentifier(temporary))") } catch {
            throw TransferError(.failed, "cannot create \(temporary) on \(server.display): \(error.message.split(separator: "\n").first.map(String.init) ?? error.message)")
        }
    }

    /// Runs `body` (which fills the temporary database and then calls ``commit(replacing:)``);
    /// when it throws, the temporary database is dropped before the error goes on.
    public func discardingOnFailure<T, E: Error>(_ body: () async throws(E) -> T) async throws(E) -> T {
        do {
            return try await body()
        } catch {
            discard()
            throw error
        }
    }

    /// Drops the target when `replacing` (`WITH (FORCE)`: its sessions end), then renames the
    /// temporary database to the target.
    public func commit(replacing: Bool) throws(TransferError) {
        if replacing { _ = try server.rows("DROP DATABASE \(LibPQ.quoteIdentifier(target)) WITH (FORCE)") }
        _ = try server.rows("ALTER DATABASE \(LibPQ.quoteIdentifier(temporary)) RENAME TO \(LibPQ.quoteIdentifier(target))")
    }

    /// Drops the temporary database if it exists (best effort: it is ampd's to drop at its
    /// next start otherwise).
    public func discard() {
        _ = try? server.rows("DROP DATABASE IF EXISTS \(LibPQ.quoteIdentifier(temporary)) WITH (FORCE)")
    }
}

/// PostgreSQL client tools (`pg_dump`, `pg_restore`, `psql`) of a version at least some
/// major: an explicit directory, then the newest of the distribution's directories, then
/// `searchPath`.
public struct ClientTools: Sendable {
    public var directory: String
    public var major: Int

    public static func find(_ tool: String, atLeast major: Int, explicit: String?, searchPath: String) async throws(TransferError) -> ClientTools {
        var candidates: [String] = []
        if let explicit { candidates.append(absolutePath(explicit)) }
        candidates += PostgresBinaries.distributionDirectories()
        candidates += searchPath.split(separator: ":").map(String.init)
        var best: ClientTools?
        for dir in candidates where access(dir + "/" + tool, X_OK) == 0 {
            guard let output = try? await runCommand(dir + "/" + tool, ["--version"], environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"]),
                  let version = PostgresVersion.parse(versionOutput: output.text)
            else { continue }
            if explicit != nil && dir == absolutePath(explicit ?? "") {
                guard version.majorNumber >= major else {
                    throw TransferError(.unavailable, "\(dir)/\(tool) is PostgreSQL \(version.majorNumber); the source needs \(tool) \(major) or newer")
                }
                return ClientTools(directory: dir, major: version.majorNumber)
            }
            if version.majorNumber >= major, version.majorNumber > (best?.major ?? 0) {
                best = ClientTools(directory: dir, major: version.majorNumber)
            }
        }
        guard let best else {
            throw TransferError(
                .unavailable,
                "\(tool) of PostgreSQL \(major) or newer is needed and not installed; install it (Debian: sudo apt install postgresql-client-\(major)) or pass --bin-dir DIR")
        }
        return best
    }

    public func path(_ tool: String) -> String { directory + "/" + tool }

    /// Runs a PostgreSQL tool to its end (no time limit: dumps take what they take; a
    /// cancelled task ends it). On failure the error names the tool and its last error line,
    /// passed through `redact` first.
    public static func run(_ path: String, _ arguments: [String], environment: [String: String],
                           redact: (String) -> String = { $0 }) async throws(TransferError) {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let output: CommandOutput
        do {
            output = try await runCommand(path, arguments, environment: environment, timeout: nil)
        } catch {
            throw TransferError(.unavailable, "cannot run \(name): \(error)")
        }
        guard output.succeeded else {
            let lines = output.text.split(separator: "\n").map(String.init)
            let reason = lines.last { $0.contains("error") || $0.contains("ERROR") || $0.contains("FATAL") } ?? lines.last ?? "no output"
            throw TransferError(.failed, "\(name) failed: \(redact(reason).trimmingWhitespace)")
        }
    }
}

/// `pg_dump -Fc` of one database into a file: written into a new 0600 file made next to the
/// target (`O_CREAT | O_EXCL | O_NOFOLLOW`, a random name) that pg_dump gets as its standard
/// output — pg_dump never opens a path, so a symbolic link planted next to the target cannot
/// redirect it — then synced and renamed over the target.
///
/// Command: `pg_dump -Fc --exclude-schema=amp_pool -h SOCKETDIR -p PORT -d DB > .FILE.tmp-RANDOM`;
/// see <https://www.postgresql.org/docs/15/app-pgdump.html>.
public enum DatabaseDump {
    /// The schema of amp's own objects in a database (the pool's lookup function): every
    /// dump amp takes leaves it out, so an export or a copy never carries it elsewhere.
    public static let ampSchema = "amp_pool"
    /// `pg_dump`'s arguments that leave amp's own objects out.
    public static let excludeAmpObjects = ["--exclude-schema=" + ampSchema]

    /// Exports `database` of the server at `socketDirectory`/`port` (PostgreSQL
    /// `serverVersion`, as `SHOW server_version` gives it) into `target`: `pg_dump` of at
    /// least that version (`explicit` directory, the distribution's, then `searchPath`), then
    /// ``write(_:pgDump:socketDirectory:port:to:)``. `phase` hears the tool before it runs.
    /// - Returns: the file's size.
    public static func export(
        _ database: String, serverVersion: String, socketDirectory: String, port: Int, to target: String, explicit: String?, searchPath: String,
        phase: (String) -> Void
    ) async throws(TransferError) -> Int64 {
        let tools = try await ClientTools.find("pg_dump", atLeast: Int(serverVersion.prefix { $0.isNumber }) ?? 0, explicit: explicit, searchPath: searchPath)
        phase("dumping \(database) with pg_dump \(tools.major) to \(target)")
        try await write(database, pgDump: tools.path("pg_dump"), socketDirectory: socketDirectory, port: port, to: target)
        var st = stat()
        return stat(target, &st) == 0 ? Int64(st.st_size) : 0
    }

    public static func write(
        _ database: String, pgDump: String, socketDirectory: String, port: Int, to target: String
    ) async throws(TransferError) {
        let temporary: (fd: Int32, path: String)
        do { temporary = try createTemporaryFile(beside: target, mode: 0o600) } catch {
            throw TransferError(.cannotCreate, "\(error); choose a directory you can write to")
        }
        let output = try? await ChildProcess.run(SpawnConfiguration(
            executable: pgDump, arguments: ["-Fc"] + excludeAmpObjects + ["-h", socketDirectory, "-p", "\(port)", "-d", database],
            environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"], output: .file(descriptor: temporary.fd, errors: { _ in })), deadline: nil)
        let synced = fsync(temporary.fd) == 0
        close(temporary.fd)
        guard let output, output.succeeded else {
            unlink(temporary.path)
            throw TransferError(.failed, "pg_dump of \(database) failed: \(output?.text.split(separator: "\n").last.map(String.init) ?? "could not run"); \(target) was not written")
        }
        guard synced, rename(temporary.path, target) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw TransferError(.cannotCreate, "cannot write \(target): \(reason); nothing was written there")
        }
    }
}

/// The roles of a source server, brought into a receiving server without their passwords
/// (the local cluster trusts its socket); roles that exist already are left as they are.
///
/// Command: `pg_dumpall --roles-only --no-role-passwords -d URL`; see
/// <https://www.postgresql.org/docs/15/app-pg-dumpall.html>.
public enum RoleCopy {
    /// - Returns: how many roles were created.
    public static func copy(
        from sourceURL: String, pgDumpall: String, environment: [String: String], into server: DatabaseServer, redact: (String) -> String
    ) async throws(TransferError) -> Int {
        let output: CommandOutput
        do {
            output = try await runCommand(pgDumpall, ["--roles-only", "--no-role-passwords", "-d", sourceURL], environment: environment, timeout: .seconds(120))
        } catch {
            throw TransferError(.unavailable, "cannot run pg_dumpall: \(error)")
        }
        guard output.succeeded else {
            throw TransferError(.failed, "pg_dumpall --roles-only failed: \(redact(output.text.split(separator: "\n").last.map(String.init) ?? "")); nothing was imported")
        }
        let conninfo = server.conninfo("postgres")
        let existing = Set(((try? LibPQ.query(conninfo, "SELECT rolname FROM pg_roles")) ?? []).compactMap { $0 })
        var created = 0
        let lines = output.text.split(separator: "\n")
        for line in lines where line.hasPrefix("CREATE ROLE ") {
            let role = line.dropFirst("CREATE ROLE ".count).prefix { $0 != ";" }.trimmingWhitespace
            let bare = role.hasPrefix("\"") ? String(role.dropFirst().dropLast()) : role
            if existing.contains(bare) { continue }
            if (try? LibPQ.rows(conninfo, String(line))) != nil { created += 1 }
            for alter in lines where alter.hasPrefix("ALTER ROLE \(role) ") {
                _ = try? LibPQ.rows(conninfo, String(alter))
            }
        }
        return created
    }
}

extension DatabaseTransfer {
    /// The tools' arguments that restore into the temporary database.
    private func restoreTarget() -> [String] { ["-d", server.conninfo(temporary)] }

    /// Dumps `database` on `source` (`pg_dump -Fd -j JOBS` into `scratch`, removed again) and
    /// restores it into the temporary database (`pg_restore -j JOBS --exit-on-error`, without
    /// owners and privileges unless `keepOwners`).
    ///
    /// Commands: see <https://www.postgresql.org/docs/15/app-pgdump.html> and
    /// <https://www.postgresql.org/docs/15/app-pgrestore.html>.
    public func copy(
        _ database: String, from source: DatabaseServer, tools: ClientTools, jobs: Int, scratch: String, keepOwners: Bool = false,
        environment: [String: String], redact: (String) -> String = { $0 }
    ) async throws(TransferError) {
        defer { try? removeTree(scratch) }
        try await Self.dump(database, from: source, tools: tools, jobs: jobs, into: scratch, environment: environment, redact: redact)
        try await restore(scratch, tools: tools, jobs: jobs, keepOwners: keepOwners, environment: environment, redact: redact)
    }

    /// `pg_dump -Fd -j JOBS` of `database` on `source` into the directory `scratch` (the
    /// caller removes it).
    public static func dump(
        _ database: String, from source: DatabaseServer, tools: ClientTools, jobs: Int, into scratch: String,
        environment: [String: String], redact: (String) -> String = { $0 }
    ) async throws(TransferError) {
        try await ClientTools.run(tools.path("pg_dump"), ["-Fd", "-j", "\(jobs)"] + DatabaseDump.excludeAmpObjects + ["-f", scratch, "-d", source.conninfo(database)],
                                  environment: environment, redact: redact)
    }

    /// Restores a `pg_dump` custom file or directory into the temporary database.
    public func restore(
        _ dump: String, tools: ClientTools, jobs: Int, keepOwners: Bool = false, environment: [String: String], redact: (String) -> String = { $0 }
    ) async throws(TransferError) {
        try await ClientTools.run(tools.path("pg_restore"), ["-j", "\(jobs)", "--exit-on-error"] + (keepOwners ? [] : ["--no-owner", "--no-acl"]) + restoreTarget() + [dump],
                                  environment: environment, redact: redact)
    }

    /// Runs an SQL script into the temporary database (`psql -X -q -v ON_ERROR_STOP=1 -f`).
    ///
    /// Command: see <https://www.postgresql.org/docs/15/app-psql.html>.
    public func runScript(_ path: String, tools: ClientTools, environment: [String: String]) async throws(TransferError) {
        try await ClientTools.run(tools.path("psql"), ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path] + restoreTarget(), environment: environment)
    }
}
