#if canImport(Glibc)
import Glibc
#endif
import SystemSupport

/// Brings one database into a server (`ampctl import`): from a running server (`pg_dump -Fd
/// -j` into a scratch directory, then `pg_restore -j`), a `pg_dump` custom file or directory
/// (`pg_restore -j`) or a plain SQL script (`psql -v ON_ERROR_STOP=1`), always into a
/// ``DatabaseTransfer``'s temporary database that is renamed at the end and dropped on any
/// failure; the source server's roles first when asked (``RoleCopy``, passwords dropped).
///
/// Commands: see <https://www.postgresql.org/docs/15/app-pgdump.html>,
/// <https://www.postgresql.org/docs/15/app-pgrestore.html> and
/// <https://www.postgresql.org/docs/15/app-psql.html>.
public struct DatabaseImport: Sendable {
    /// Where the database comes from.
    public enum Source: Sendable, Equatable {
        /// A running server: its connection string without a password (the password, if any,
        /// is in the tools' environment as `PGPASSWORD`) and its name for messages.
        case server(conninfo: String, display: String)
        case directoryDump(path: String)
        case customDump(path: String)
        case sqlScript(path: String)
    }

    public var source: Source
    /// The database made, and whether one of that name exists already (it is replaced).
    public var target: String
    public var replacing: Bool
    /// The receiving server.
    public var server: DatabaseServer
    public var temporarySuffix: String
    public var jobs: Int
    /// Also the source server's roles, and the owners of its objects.
    public var roles: Bool
    /// The tools' environment (`PATH`, `PGPASSWORD` of the source, …).
    public var environment: [String: String]
    /// Hides the source's password in anything shown.
    public var redact: @Sendable (String) -> String
    /// A directory for the dump of a server source (made and removed here).
    public var scratch: String

    public init(
        source: Source, target: String, replacing: Bool, server: DatabaseServer, temporarySuffix: String, jobs: Int, roles: Bool,
        environment: [String: String], redact: @escaping @Sendable (String) -> String = { $0 }, scratch: String
    ) {
        self.source = source
        self.target = target
        self.replacing = replacing
        self.server = server
        self.temporarySuffix = temporarySuffix
        self.jobs = jobs
        self.roles = roles
        self.environment = environment
        self.redact = redact
        self.scratch = scratch
    }

    /// How many steps ``run(tools:psql:phase:)`` announces.
    public var steps: Int { roles ? 4 : 3 }

    /// The major version of a server source, asked over its URL (without a password) with
    /// `connect_timeout=10` and `password` when one was given; a refusal is told apart from an
    /// unreachable server, both named with the fix.
    /// The client tools this import runs: `pg_dump` of at least the source server's and this
    /// server's major for a server, `pg_restore` of at least this server's for a dump, and
    /// `psql` for a script. `password` (the source URL's) serves only the version probe;
    /// `localDatabase` is one this server has.
    public func tools(password: String?, localDatabase: String, explicit: String?, searchPath: String) async throws(TransferError) -> (dump: ClientTools, psql: ClientTools?) {
        let localMajor = (try? DatabaseServer.majorVersion(conninfo: server.conninfo(localDatabase))) ?? 0
        var sourceMajor = 0, tool = "pg_restore"
        if case .server(let conninfo, let display) = source {
            sourceMajor = try Self.sourceMajor(url: conninfo, password: password, display: display, redact: redact)
            tool = "pg_dump"
        }
        let dump = try await ClientTools.find(tool, atLeast: max(sourceMajor, localMajor), explicit: explicit, searchPath: searchPath)
        var psql: ClientTools? = nil
        if case .sqlScript = source { psql = try await ClientTools.find("psql", atLeast: 0, explicit: explicit, searchPath: searchPath) }
        return (dump, psql)
    }

    public static func sourceMajor(url: String, password: String?, display: String, redact: (String) -> String) throws(TransferError) -> Int {
        var conninfo = url + (url.contains("?") ? "&" : "?") + "connect_timeout=10"
        if let password { conninfo += "&password=" + PostgresHandle.percentEncode(password) }
        do throws(LibPQError) {
            return try DatabaseServer.majorVersion(conninfo: conninfo)
        } catch {
            let reason = redact(error.message.split(separator: "\n").first.map(String.init) ?? error.message)
            if reason.contains("authentication failed") || reason.contains("no password supplied") {
                throw TransferError(.refused, "cannot connect to \(display): \(reason); check the user and password in the URL")
            }
            throw TransferError(.unavailable, "cannot connect to \(display): \(reason); check the host and port, and that the server runs")
        }
    }

    /// Runs the import. `tools` are pg_dump/pg_restore (and pg_dumpall for roles), `psql` the
    /// client for a script; `phase` is told each step as it begins. Stops between steps when
    /// the task is cancelled (`interrupted`); nothing is left behind on any failure. Returns
    /// the imported database's size.
    @discardableResult
    public func run(tools: ClientTools, psql: ClientTools?, phase: (String) -> Void) async throws(TransferError) -> Int64 {
        var step = 0
        func begin(_ text: String) throws(TransferError) {
            if Task.isCancelled { throw TransferError(.interrupted, "interrupted; nothing was imported") }
            step += 1
            phase("[\(step)/\(steps)] \(text)")
        }
        if roles, case .server(let conninfo, let display) = source {
            try begin("roles from \(display) (pg_dumpall --roles-only, passwords dropped)")
            let created = try await RoleCopy.copy(from: conninfo, pgDumpall: tools.path("pg_dumpall"), environment: environment, into: server, redact: redact)
            phase("created \(created) role(s); existing ones were left as they are")
        }
        let transfer = DatabaseTransfer(into: target, on: server, temporarySuffix: temporarySuffix)
        try begin("creating \(transfer.temporary)")
        do { try transfer.create() } catch {
            throw TransferError(.failed, "\(error.message); nothing was imported (see `ampctl status`)")
        }
        try await transfer.discardingOnFailure { () async throws(TransferError) in
            do throws(TransferError) {
                switch source {
                case .server(let conninfo, let display):
                    try begin("copying \(display) with pg_dump \(tools.major) (\(jobs) jobs)")
                    let from = DatabaseServer(display: display) { _ in conninfo }
                    try await transfer.copy(conninfo, from: from, tools: tools, jobs: jobs, scratch: scratch, keepOwners: roles,
                                            environment: environment, redact: redact)
                case .directoryDump(let path), .customDump(let path):
                    try begin("restoring \(path) with pg_restore \(tools.major) (\(jobs) jobs)")
                    try await transfer.restore(path, tools: tools, jobs: jobs, keepOwners: roles, environment: environment)
                case .sqlScript(let path):
                    try begin("running \(path) with psql (stops at the first error)")
                    try await transfer.runScript(path, tools: psql ?? tools, environment: environment)
                }
                try begin("renaming \(transfer.temporary) to \(target)")
                try transfer.commit(replacing: replacing)
            } catch where error.code == .failed {
                throw TransferError(.failed, error.message + "; nothing was left behind")
            }
        }
        return server.size(of: target)
    }

    /// What a dump at `path` is, from the file itself: a directory holding `toc.dat` is
    /// `pg_dump -Fd`, a file starting with `PGDMP` is `-Fc`, any other file a SQL script.
    /// `argument` is how the user wrote it, for messages.
    /// - Returns: whether it is a directory, has `toc.dat`, and the file's first five bytes.
    public static func probeDump(_ path: String, argument: String) throws(TransferError) -> (isDirectory: Bool, hasTOC: Bool, head: [UInt8]) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw TransferError(.noInput, "\(argument): no such file or directory; give a dump file, a dump directory or a postgresql:// URL")
        }
        let directory = (st.st_mode & S_IFMT) == S_IFDIR
        guard directory || (st.st_mode & S_IFMT) == S_IFREG else {
            throw TransferError(.data, "\(argument) is not a regular file (a device, pipe or socket never ends or cannot be read twice); give a dump file, a dump directory or a postgresql:// URL")
        }
        let hasTOC = access(path + "/toc.dat", R_OK) == 0
        if directory && !hasTOC {
            throw TransferError(.data, "\(argument) is a directory without toc.dat, so not a pg_dump directory; give a pg_dump -Fd directory, a dump file or a postgresql:// URL")
        }
        var head: [UInt8] = []
        if !directory, let f = fopen(path, "r") {
            head = [UInt8](repeating: 0, count: 5)
            let n = fread(&head, 1, 5, f)
            fclose(f)
            head = Array(head.prefix(n))
        }
        return (directory, hasTOC, head)
    }
}

extension DatabaseTransfer {
    /// Copies `database` between two running servers (`push`, `pull`): a `pg_dump -Fd` of the
    /// sending side into `scratch` (removed again), restored into a temporary database on the
    /// receiving side that replaces the one of that name only with `replace`. `phase` is told
    /// each of the three steps. Returns the size on the receiving side; the sending side is
    /// only read, and the receiving side is as it was after any failure.
    public static func copyDatabase(
        _ database: String, from: DatabaseServer, to: DatabaseServer, temporarySuffix: String, tools: ClientTools, jobs: Int, replace: Bool,
        scratch: String, environment: [String: String], phase: (String) -> Void
    ) async throws(TransferError) -> Int64 {
        guard try from.hasDatabase(database) else {
            throw TransferError(.data, "\(from.display) has no database \(database); see the names with `ampctl databases`, or give another with --db")
        }
        let exists = try to.hasDatabase(database)
        if exists && !replace {
            throw TransferError(.data, "\(to.display) has a database \(database) already; add --replace to replace it, or copy another with --db")
        }
        let transfer = DatabaseTransfer(into: database, on: to, temporarySuffix: temporarySuffix)
        defer { try? removeTree(scratch) }
        phase("dumping \(database) from \(from.display) with pg_dump \(tools.major) (\(jobs) jobs)")
        try await dump(database, from: from, tools: tools, jobs: jobs, into: scratch, environment: environment)
        phase("restoring into \(transfer.temporary) on \(to.display)")
        try transfer.create()
        try await transfer.discardingOnFailure { () async throws(TransferError) in
            do throws(TransferError) {
                try await transfer.restore(scratch, tools: tools, jobs: jobs, environment: environment)
                phase(exists ? "replacing \(database) on \(to.display)" : "renaming \(transfer.temporary) to \(database) on \(to.display)")
                try transfer.commit(replacing: exists)
            } catch {
                throw TransferError(error.code, error.message + "; \(to.display) is as it was (the partial copy was dropped)")
            }
        }
        return to.size(of: database)
    }
}
