#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import ArgumentParser
import ChildProcess
import SystemSupport

/// Which way `push`/`pull` copy.
enum TransferDirection: String {
    /// The local cluster to the external server.
    case push
    /// The external server to the local cluster.
    case pull
}

/// The options `push` and `pull` share.
struct TransferOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    @Option(name: .customLong("db"), help: "Database to copy (default: the one the external URL names).") var database: String?
    @Flag(name: .customLong("replace"), help: "Replace the database on the receiving side if it exists.") var replace = false
    @Option(name: .customLong("jobs"), help: "Parallel pg_dump/pg_restore jobs.") var jobs: Int = 2
    @Option(name: .customLong("bin-dir"), help: ArgumentHelp("Where pg_dump and pg_restore are (default: the newest installed).", valueName: "DIR")) var binDir: String?

    func validate() throws {
        try selection.check(positionalName)
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs \(jobs): use 1 to 64") }
        if let database, let reason = Metadb.databaseNameProblem(database) ?? Metadb.reservedDatabaseNameProblem(database) {
            throw ValidationError("--db \(database): \(reason)")
        }
    }
}

struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Copy a database from the project's local cluster to its external server ([postgres] url).",
        discussion: """
            The copy goes into a temporary database on the server that is renamed at the end, so a failure leaves nothing behind.
            An existing database is replaced only with --replace.
            The local cluster is started on a private socket for the copy when it is not running.

            """)
    @OptionGroup var options: TransferOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in try await transfer(.push, options) }
    }
}

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Copy a database from the project's external server ([postgres] url) into its local cluster.",
        discussion: """
            The copy goes into a temporary local database that is renamed at the end, so a failure leaves nothing behind.
            An existing database is replaced only with --replace.

            """)
    @OptionGroup var options: TransferOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in try await transfer(.pull, options) }
    }
}

/// `push`/`pull`: dump one side with `pg_dump -Fd -j`, restore the other with `pg_restore -j`
/// into `NAME__amp_DIRECTION_PID`, then rename (dropping the old one with `--replace`).
///
/// Commands: `pg_dump -Fd -j N -f DIR -d CONNINFO` and `pg_restore -j N --exit-on-error
/// --no-owner --no-acl -d CONNINFO DIR`; see <https://www.postgresql.org/docs/15/app-pgdump.html>
/// and <https://www.postgresql.org/docs/15/app-pgrestore.html>. The connection strings hold no
/// password (libpq reads amp's password file, `~/.pgpass` or the service file).
func transfer(_ direction: TransferDirection, _ options: TransferOptions) async throws(AmpctlError) -> ExitStatus {
    let started = ContinuousClock.now
    let env = Platform.current.environment
    let project = try resolveProject(options.name, address: nil, environment: env)
    let ampDir = AmpDirectory(base: project.base, source: .flag)
    let layers: ConfigurationLayers
    do {
        layers = try ConfigurationLayers.load(ampDir: ampDir, environment: env, workingDirectory: Platform.current.workingDirectory) { _ in }
    } catch {
        throw AmpctlError(.config, error.message)
    }
    guard let url = layers.settings.externalURL else {
        throw AmpctlError(.config, "\(project.name) has no external server; add one with `ampctl init --external postgresql://USER@HOST:PORT/DB` (it sets [postgres] url)")
    }
    let passFile: String?
    switch AmpSecrets.existingExternalPassFile(project: project.name, environment: env) {
    case .failure(let problem): throw AmpctlError(.noPermission, "the password file \(problem.message)")
    case .success(let file): passFile = file
    }
    let server: ExternalServer
    do {
        server = try ExternalServer(url: url, passFile: passFile)
    } catch {
        throw AmpctlError(.config, "\(ampDir.configFile): postgres.url: \(error.message)")
    }
    guard let database = options.database ?? server.database.flatMap({ Metadb.protectedDatabases.contains($0) ? nil : $0 }) else {
        throw AmpctlError(.usage, "the external URL names no database of its own (it names \(server.database ?? "none")); say which to copy with --db NAME")
    }
    if Metadb.protectedDatabases.contains(database) { throw AmpctlError(.usage, "--db \(database): the server's own database cannot be copied over; choose another") }
    if let reason = Metadb.reservedDatabaseNameProblem(database) { throw AmpctlError(.usage, "database \(database): \(reason)") }

    // The local cluster: its version picks its binaries.
    guard let localMajor = FileContents.text(ampDir.metadb + "/PG_VERSION", limit: 64).flatMap({ Int($0.trimmingWhitespace) }) else {
        throw AmpctlError(.noInput, "\(project.name) has no local cluster in \(ampDir.metadb); \(direction == .pull ? "make one first: remove [postgres] url, start the project once, and set the url again" : "there is nothing to push")")
    }
    guard let binaries = await PostgresBinaries.forMajor(localMajor, preferring: layers.settings.binDir.map { [$0] } ?? []) else {
        throw AmpctlError(.unavailable, "the local cluster is PostgreSQL \(localMajor), whose binaries are not installed; install postgresql-\(localMajor) (or set bin_dir)")
    }
    let remoteAnswer: ExternalServer.Answer
    switch server.probe(database: "postgres") {
    case .success(let a): remoteAnswer = a
    case .failure(let e):
        let code: ExitStatus = ExternalServer.isPermanent(e) ? .noPermission : .unavailable
        throw AmpctlError(code, "cannot reach the external server: \(e.message); fix the server or the password (`ampctl init --external URL` again)")
    }
    let remoteMajor = Int(remoteAnswer.version.prefix { $0.isNumber }) ?? 0
    let tools = try await ClientTools.find("pg_restore", atLeast: max(localMajor, remoteMajor), explicit: options.binDir)
    let application = "amp-\(direction.rawValue)"
    let remote = DatabaseServer(display: server.display) { server.conninfo(database: $0, application: application) }

    let steps = 4
    var step = 0
    func phase(_ text: String) {
        step += 1
        err("ampctl: [\(step)/\(steps)] \(text)")
    }
    let runtime = Metadb.runtimeDirectory(environment: env)
    return try await withLock(ampDir) { () async throws(AmpctlError) -> ExitStatus in
        phase("starting the local cluster (PostgreSQL \(localMajor)) on a private socket")
        let version: PostgresVersion
        do throws(PostgresError) { version = try await binaries.version() } catch { throw AmpctlError(.unavailable, error.message) }
        let result = try await withTemporaryServer(ampDir.metadb, binaries: binaries, version: version, socketDirectory: runtime + "/amp-\(direction.rawValue)-\(getpid())",
                                                   describing: "the local cluster") { handle -> Result<Int64, AmpctlError> in
            let local = DatabaseServer.socket(display: "the local cluster", directory: handle.socketDirectory, port: handle.port,
                                              user: handle.user, application: application)
            let (from, to) = direction == .push ? (local, remote) : (remote, local)
            do throws(TransferError) {
                return .success(try await DatabaseTransfer.copyDatabase(
                    database, from: from, to: to, temporarySuffix: Metadb.copySuffix, tools: tools, jobs: options.jobs, replace: options.replace,
                    scratch: ampDir.path + "/.\(direction.rawValue)-\(getpid())", environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"],
                    phase: phase))
            } catch {
                return .failure(AmpctlError(error))
            }
        }
        let size = try result.get()
        err("ampctl: \(direction == .push ? "pushed" : "pulled") \(database) (\(humanBytes(size))) \(direction == .push ? "to \(server.display)" : "from \(server.display)") in \(format2(seconds(since: started))) s")
        return .success
    }
}
