#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import ArgumentParser
import ChildProcess
import SystemSupport

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

/// `push`/`pull`: checks the project, its external server and the database's name, then runs
/// ``ClusterTransfer`` under the project's lock and words its failures. The connection strings
/// hold no password (libpq reads amp's password file, `~/.pgpass` or the service file).
func transfer(_ direction: ClusterTransfer.Direction, _ options: TransferOptions) async throws(AmpctlError) -> ExitStatus {
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

    let transfer = ClusterTransfer(
        direction: direction, dataDirectory: ampDir.metadb, remote: server, database: database, binDirectory: layers.settings.binDir,
        toolsDirectory: options.binDir, searchPath: env["PATH"] ?? "", jobs: options.jobs, replace: options.replace, temporarySuffix: Metadb.copySuffix,
        socketDirectory: Metadb.runtimeDirectory(environment: env) + "/amp-\(direction.rawValue)-\(getpid())", scratch: ampDir.path + "/.\(direction.rawValue)-\(getpid())")
    let steps = 4
    var step = 0
    let size = try await withLock(ampDir) { () async throws(AmpctlError) -> Int64 in
        do throws(ClusterTransfer.Failure) {
            return try await transfer.run { text in
                step += 1
                err("ampctl: [\(step)/\(steps)] \(text)")
            }
        } catch {
            switch error {
            case .noLocalCluster:
                throw AmpctlError(.noInput, "\(project.name) has no local cluster in \(ampDir.metadb); \(direction == .pull ? "make one first: remove [postgres] url, start the project once, and set the url again" : "there is nothing to push")")
            case .binariesMissing(let major):
                throw AmpctlError(.unavailable, "the local cluster is PostgreSQL \(major), whose binaries are not installed; install postgresql-\(major) (or set bin_dir)")
            case .unreachable(let e, let permanent):
                throw AmpctlError(permanent ? .noPermission : .unavailable, "cannot reach the external server: \(e.message); fix the server or the password (`ampctl init --external URL` again)")
            case .version(let e): throw AmpctlError(.unavailable, e.message)
            case .privateServer(.socketDirectory(let reason)):
                throw AmpctlError(.cannotCreate, "cannot make a socket directory for the local cluster: \(reason); set XDG_RUNTIME_DIR to a directory of yours")
            case .privateServer(.start(let failure)): throw AmpctlError(.failure, "the local cluster did not start: \(failure.message)")
            case .transfer(let e): throw AmpctlError(e)
            }
        }
    }
    err("ampctl: \(direction == .push ? "pushed" : "pulled") \(database) (\(humanBytes(size))) \(direction == .push ? "to \(server.display)" : "from \(server.display)") in \(format2(seconds(since: started))) s")
    return .success
}
