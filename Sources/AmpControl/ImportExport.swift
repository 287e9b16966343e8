#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import ArgumentParser
import SystemSupport

/// Where a database to import comes from.
enum ImportSource: Equatable {
    /// A running server, by libpq URL (`postgresql://user:pw@host:5432/app`).
    case server(url: String)
    /// A `pg_dump -Fd` directory.
    case directoryDump(path: String)
    /// A `pg_dump -Fc` file.
    case customDump(path: String)
    /// A plain SQL script.
    case sqlScript(path: String)

    /// Decides from the argument and, for a file, its first bytes (`PGDMP` is the custom
    /// format's magic; a directory holding `toc.dat` is the directory format).
    static func classify(_ argument: String, isDirectory: Bool, hasTOC: Bool, head: [UInt8]) -> ImportSource {
        if argument.hasPrefix("postgresql://") || argument.hasPrefix("postgres://") { return .server(url: argument) }
        if isDirectory && hasTOC { return .directoryDump(path: argument) }
        if head.starts(with: Array("PGDMP".utf8)) { return .customDump(path: argument) }
        return .sqlScript(path: argument)
    }
}

/// A libpq URL taken apart as far as amp needs (by ``ExternalURL``): the password (kept out of
/// argv, logs and messages: it goes to the tools in `PGPASSWORD`), a display form and the
/// database name.
struct SourceURL: Equatable {
    /// The URL without its password.
    var withoutPassword: String
    var password: String?
    /// `host:port/db` for messages.
    var display: String
    var database: String?

    init(_ url: String) {
        (withoutPassword, password) = ExternalURL.removingPassword(url)
        writtenPasswords = ExternalURL.writtenPasswords(url)
        let parts = ExternalURL.split(url)
        let path = parts.path.dropFirst()
        database = path.isEmpty ? nil : ExternalURL.percentDecoded(String(path))
        display = parts.scheme.isEmpty ? url : (parts.hostport.isEmpty ? "local socket" : parts.hostport) + "/" + (database ?? "(default database)")
    }

    /// The password as written in the URL (percent-encoded forms), redacted too.
    var writtenPasswords: [String] = []

    /// `text` with the password replaced, in every form it may appear (decoded, or as written
    /// in the URL with its percent-escapes), for anything shown or logged.
    func redacted(_ text: String) -> String {
        var out = text
        for secret in ([password ?? ""] + writtenPasswords).filter({ !$0.isEmpty }).sorted(by: { $0.count > $1.count }) {
            out = out.replacing(secret, with: "****")
        }
        return out
    }
}

extension ClientTools {
    /// The client tools for ampctl: `--bin-dir`, the distribution's directories, then `PATH`.
    static func find(_ tool: String, atLeast major: Int, explicit: String?) async throws(AmpctlError) -> ClientTools {
        do { return try await find(tool, atLeast: major, explicit: explicit, searchPath: Platform.current.environment["PATH"] ?? "") } catch {
            throw AmpctlError(error)
        }
    }
}

// MARK: - export

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Dump a project database to a file (pg_dump custom format; restore with ampctl import or pg_restore).")

    @Argument(help: "The file to write (replaced only when the dump succeeded).") var file: String
    @Option(name: .customLong("db"), help: "Database (default: the project's default database).") var database: String?
    var name: String? { options.selection.project }
    @Option(name: .customLong("bin-dir"), help: ArgumentHelp("Where pg_dump is (default: the newest installed).", valueName: "DIR")) var binDir: String?
    @OptionGroup var options: ProjectOptions

    /// The dump: ``DatabaseDump/export(_:serverVersion:socketDirectory:port:to:explicit:searchPath:phase:)``.
    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let (connection, status) = try await withProject(name, address: options.address) { client async throws(MetadbClientError) in
                (try await client.connectionInfo(), try await client.status())
            }
            let db = database ?? connection.database
            let target = absolutePath(file)
            let started = ContinuousClock.now
            let size: Int64
            do throws(TransferError) {
                size = try await DatabaseDump.export(
                    db, serverVersion: status.version ?? "", socketDirectory: connection.socketDirectory, port: connection.port, to: target,
                    explicit: binDir, searchPath: Platform.current.environment["PATH"] ?? "") { err("ampctl: \($0)") }
            } catch {
                throw AmpctlError(error)
            }
            err("ampctl: exported \(db) to \(target) (\(humanBytes(size)), \(format2(seconds(since: started))) s); restore it with `ampctl import \(file) --db NAME`")
            return .success
        }
    }
}

// MARK: - import

struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Bring a database in from a running PostgreSQL (URL) or a dump file (custom, directory or SQL).",
        discussion: """
            The data goes into a temporary database that is renamed at the end, so a failure leaves nothing behind.
            An existing database is replaced only with --replace.
            Interrupted (Ctrl-C, SIGTERM, SIGHUP), it ends its tools and drops the temporary database first.
            Keep the source's password off the command line, where other users see it in ps:
            --password asks for it, and PGPASSWORD, PGPASSFILE or ~/.pgpass work as for psql.
            A password in the URL still works (with a warning); it goes to pg_dump in PGPASSWORD and never into a message.

            """)

    @Argument(help: "postgresql://USER:PASSWORD@HOST:PORT/DB, or a dump file or directory.") var source: String
    @Option(name: .customLong("db"), help: "The database to create (default: the source's database name).") var database: String?
    @Option(name: .customLong("jobs"), help: "Parallel pg_dump/pg_restore jobs (directory and custom formats).") var jobs: Int = 2
    @Flag(name: .customLong("replace"), help: "Replace the database if it exists.") var replace = false
    @Flag(name: .customLong("roles"), help: "Also bring the source server's roles (pg_dumpall --roles-only; passwords dropped).") var roles = false
    var name: String? { options.selection.project }
    @Option(name: .customLong("bin-dir"), help: ArgumentHelp("Where pg_dump, pg_restore and psql are (default: the newest installed).", valueName: "DIR")) var binDir: String?
    @Flag(name: .customLong("password"), help: "Ask for the source server's password on the terminal (instead of writing it in the URL).") var askPassword = false
    @OptionGroup var options: ProjectOptions

    func validate() throws {
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs \(jobs): use 1 to 64") }
        if let database, let reason = Metadb.databaseNameProblem(database) ?? Metadb.reservedDatabaseNameProblem(database) {
            throw ValidationError("--db \(database): \(reason)")
        }
    }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let kind = try classify()
            var url = (kind.serverURL).map(SourceURL.init)
            if let given = url, given.password != nil {
                scrubArgument(source, with: given.withoutPassword)
                err("ampctl: warning: the password in the URL was visible to other users in ps; use --password, PGPASSWORD or ~/.pgpass instead")
            }
            if askPassword {
                guard var given = url else { throw AmpctlError(.usage, "--password is for a postgresql:// URL source; leave it out for a dump file") }
                guard let secret = readSecret(prompt: "Password for \(given.display): ") else {
                    throw AmpctlError(.usage, "--password needs a terminal to ask on; set PGPASSWORD or use ~/.pgpass instead")
                }
                given.password = secret
                url = given
            }
            let source = url
            let command = self
            return try await cancellingOnSignals(interrupted: "the import was stopped and its temporary database dropped; nothing was imported") {
                () async throws(AmpctlError) -> ExitStatus in try await command.importDatabase(kind, url: source)
            }
        }
    }

    private func importDatabase(_ kind: ImportSource, url: SourceURL?) async throws(AmpctlError) -> ExitStatus {
        do {
            let started = ContinuousClock.now
            let project = try resolveProject(name, address: options.address, environment: Platform.current.environment)
            let client = try connect(project)
            let connection: Metadb.GetConnection.Reply, databases: [MetadbDatabase]
            do throws(MetadbClientError) {
                connection = try await client.connectionInfo()
                databases = try await client.databases()
            } catch {
                throw AmpctlError(error, project: project)
            }
            let (target, exists) = try chooseTarget(kind, url: url, existing: databases)

            let local = connection.server
            if roles && url == nil { throw AmpctlError(.usage, "--roles takes the roles from a running server: give a postgresql:// URL, or leave --roles out") }
            let redact: @Sendable (String) -> String = { url?.redacted($0) ?? $0 }
            let source: DatabaseImport.Source
            switch kind {
            case .server:
                guard let url else { throw AmpctlError(.usage, "give a postgresql:// URL") }
                source = .server(conninfo: url.withoutPassword, display: url.display)
            case .directoryDump(let path): source = .directoryDump(path: path)
            case .customDump(let path): source = .customDump(path: path)
            case .sqlScript(let path): source = .sqlScript(path: path)
            }
            let job = DatabaseImport(
                source: source, target: target, replacing: exists, server: local, temporarySuffix: Metadb.importSuffix, jobs: jobs, roles: roles,
                environment: toolEnvironment(url), redact: redact, scratch: project.ampDir + "/.import-\(getpid())")

            let size: Int64
            do throws(TransferError) {
                // The source's version decides the tools.
                let tools = try await job.tools(password: url?.password, localDatabase: connection.database, explicit: binDir,
                                                searchPath: Platform.current.environment["PATH"] ?? "")
                size = try await job.run(tools: tools.dump, psql: tools.psql) { err("ampctl: \($0)") }
            } catch {
                throw AmpctlError(error)
            }
            err("ampctl: imported \(target) (\(humanBytes(size)), \(format2(seconds(since: started))) s); connect: ampctl psql -d \(target)")
            return .success
        }
    }

    /// The database to make (`--db`, the URL's, or the file's name) and whether it exists; refused
    /// when amp reserves the name, it is protected, or it exists without `--replace`.
    private func chooseTarget(_ kind: ImportSource, url: SourceURL?, existing databases: [MetadbDatabase]) throws(AmpctlError) -> (String, Bool) {
        guard let target = database ?? url?.database ?? defaultName(kind) else {
            throw AmpctlError(.usage, "name the database to create with --db NAME")
        }
        if let reason = Metadb.databaseNameProblem(target) ?? Metadb.reservedDatabaseNameProblem(target) {
            throw AmpctlError(.usage, "database name \(target): \(reason); choose one with --db NAME")
        }
        if Metadb.protectedDatabases.contains(target) { throw AmpctlError(.dataError, "database \(target) cannot be replaced; choose another with --db NAME") }
        let exists = databases.contains { $0.name == target }
        if exists && !replace { throw AmpctlError(.dataError, "database \(target) exists already; add --replace to replace it, or choose another name with --db") }
        return (target, exists)
    }

    private func classify() throws(AmpctlError) -> ImportSource {
        if source.hasPrefix("postgresql://") || source.hasPrefix("postgres://") { return .server(url: source) }
        let path = absolutePath(source)
        do throws(TransferError) {
            let found = try DatabaseImport.probeDump(path, argument: source)
            return ImportSource.classify(path, isDirectory: found.isDirectory, hasTOC: found.hasTOC, head: found.head)
        } catch {
            throw AmpctlError(error)
        }
    }

    /// For a file: its base name up to the first dot, when that is a valid database name.
    private func defaultName(_ kind: ImportSource) -> String? {
        guard case .server = kind else {
            let base = absolutePath(source).split(separator: "/").last.map { String($0.prefix { $0 != "." }) }?.lowercased() ?? ""
            return Metadb.databaseNameProblem(base) == nil ? base : nil
        }
        return nil
    }

    /// The tools' environment: the password of the URL (or the prompt) in `PGPASSWORD`, else
    /// the caller's own libpq password sources (`PGPASSWORD`, `PGPASSFILE` or `~/.pgpass`,
    /// `PGSERVICEFILE`).
    private func toolEnvironment(_ url: SourceURL?) -> [String: String] {
        let caller = Platform.current.environment
        var env = ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"]
        for key in ["HOME", "PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR"] { env[key] = caller[key] }
        if let p = url?.password { env["PGPASSWORD"] = p }
        return env
    }
}

extension ImportSource {
    var serverURL: String? { if case .server(let url) = self { return url }; return nil }
}

/// Seconds since `start`.
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}
