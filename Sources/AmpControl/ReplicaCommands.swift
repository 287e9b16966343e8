#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpConfig
import AmpPostgres
import AmpProtocol
import ArgumentParser
import ChildProcess
import SystemSupport

struct ReplicaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica",
        abstract: "Make the project a streaming replica (hot standby) of another server, or bring a former primary back as one.",
        discussion: """
            No automatic failover: deciding that a primary is gone needs a witness that amp does not have.
            Promote a standby yourself (`ampctl promote`), then rejoin the old primary (`ampctl replica rejoin`).

            """,
        subcommands: [ReplicaInitCommand.self, ReplicaRejoinCommand.self])
}

/// What `replica init` and `rejoin` share: the project (stopped) and its primary.
struct ReplicaOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    var name: String? { selection.project ?? positionalName }
    @Option(name: .customLong("from"), help: ArgumentHelp(
        "The primary: a project of yours (its socket), or a URL or connection string (TCP with SCRAM and TLS: postgresql://USER:PASSWORD@HOST:PORT/postgres?sslmode=require).",
        valueName: "PROJECT_OR_URL"))
    var from: String

    func validate() throws {
        try selection.check(positionalName)
        if from.isEmpty { throw ValidationError("--from: name the primary (a project or a URL)") }
    }
}

struct ReplicaInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make the project a hot standby of a primary (pg_basebackup -R on a replication slot); the project must be stopped.",
        discussion: """
            The clone is made beside the project's cluster and put in place at the end; a cluster the project had is kept in .amp/rollback (--replace).
            Start the project afterwards: it follows the primary and takes read-only queries.

            """)
    @OptionGroup var options: ReplicaOptions
    @Flag(name: .customLong("replace"), help: "Replace the project's own cluster (it is kept in .amp/rollback).") var replace = false

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            try await replicaWork(options) { setup, project, phase async throws(Replication.Failure) -> String in
                let kept = try await setup.initialize(replace: replace, phase: phase)
                return "\(project.name) is a standby of \(setup.source.display) now (slot \(setup.slot) on the primary)"
                    + (kept.map { "; its own cluster is kept in \($0)" } ?? "") + "; start it: \(startHint(project))"
            }
        }
    }
}

struct ReplicaRejoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rejoin",
        abstract: "Bring a former primary back as a standby of the promoted one (pg_rewind, or a fresh clone when it cannot); the project must be stopped.",
        discussion: """
            pg_rewind needs data checksums or wal_log_hints, and full_page_writes (the durable profile); otherwise the cluster is cloned afresh.
            The cluster before is kept in .amp/rollback.

            """)
    @OptionGroup var options: ReplicaOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            try await replicaWork(options) { setup, project, phase async throws(Replication.Failure) -> String in
                switch try await setup.rejoin(phase: phase) {
                case .rewound(let kept):
                    return "\(project.name) follows \(setup.source.display) again (pg_rewind)" + (kept.map { "; the cluster before is kept in \($0)" } ?? "")
                        + "; start it: \(startHint(project))"
                case .cloned(let kept, let why):
                    return "\(project.name) follows \(setup.source.display) again (cloned afresh: \(why))" + (kept.map { "; the cluster before is kept in \($0)" } ?? "")
                        + "; start it: \(startHint(project))"
                }
            }
        }
    }
}

/// Resolves the project and its primary, checks that the project is stopped, and runs `body`
/// under its lock; prints the phases and the outcome.
func replicaWork(
    _ options: ReplicaOptions, _ body: (ReplicaSetup, Project, (String) -> Void) async throws(Replication.Failure) -> String
) async throws(AmpctlError) -> ExitStatus {
    let env = Platform.current.environment
    let project = try resolveProject(options.name, address: nil, environment: env)
    guard !project.base.isEmpty else { throw AmpctlError(.noInput, "\(project.name) has no project directory here; run this in the project") }
    let ampDir = AmpDirectory(base: project.base, source: .flag)
    let settings: AmpSettings
    do {
        settings = try ConfigurationLayers.load(ampDir: ampDir, environment: env, workingDirectory: Platform.current.workingDirectory) { _ in }.settings
    } catch {
        throw AmpctlError(.config, error.message)
    }
    if settings.externalURL != nil {
        throw AmpctlError(.config, "\(project.name) uses an external server ([postgres] url); a standby is a cluster amp runs: remove the url first")
    }
    if await serviceRunning(project) {
        throw AmpctlError(.tempFail, "\(project.name) is running; stop it first (`ampctl stop \(project.name)`), then run this again")
    }
    let source = try await replicaSource(options.from, standby: project.name)
    if case .socket = classify(options.from), options.from == project.name {
        throw AmpctlError(.usage, "--from \(options.from): a project cannot follow itself; name its primary")
    }
    var account: ProcessCredentials?
    if geteuid() == 0 {
        var st = stat()
        guard stat(project.base, &st) == 0, st.st_uid != 0, let owner = ProcessCredentials.lookup(uid: st.st_uid) else {
            throw AmpctlError(.noPermission, "\(project.base) belongs to root; PostgreSQL's files must belong to the project's account: run ampctl as that account")
        }
        account = owner
    }
    let setup = ReplicaSetup(
        dataDirectory: ampDir.metadb, rollbackDirectory: ampDir.rollbackDirectory, source: source, slot: Replication.slotName(standby: project.name),
        binDirectory: settings.binDir, account: account, sync: settings.profile == .durable, stamp: compactTime())
    let started = ContinuousClock.now
    let message = try await withLock(ampDir) { () async throws(AmpctlError) -> String in
        do throws(Replication.Failure) {
            return try await body(setup, project) { err("ampctl: \($0)") }
        } catch {
            throw AmpctlError(.unavailable, "\(project.name): \(error.message); the project's cluster is as it was")
        }
    }
    err("ampctl: \(message) (\(format2(seconds(since: started))) s)")
    return .success
}

enum ReplicaSourceKind { case socket, url }

/// A name is a project; anything with `://` or `=` is a URL or connection string.
func classify(_ from: String) -> ReplicaSourceKind { from.contains("://") || from.contains("=") ? .url : .socket }

/// The primary as a ``Replication/Source``: a project's socket (it must be running) or a URL.
func replicaSource(_ from: String, standby: String) async throws(AmpctlError) -> Replication.Source {
    switch classify(from) {
    case .url:
        switch Replication.Source.url(from, application: standby) {
        case .success(let s): return s
        case .failure(let e): throw AmpctlError(.usage, "--from: not a URL or connection string libpq reads (\(e.message)); use postgresql://USER@HOST:PORT/postgres")
        }
    case .socket:
        let c = try await withProject(from, address: nil) { client throws(MetadbClientError) in try await client.connectionInfo() }
        guard !c.socketDirectory.isEmpty else {
            throw AmpctlError(.config, "\(from) uses an external server; give that server's URL to --from instead")
        }
        return .socket(directory: c.socketDirectory, port: c.port, user: c.user, application: standby)
    }
}

struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Promote a standby to a primary: it stops following and takes writes (no automatic failover; you decide).")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let status = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.promote() }
            if options.json {
                outJSON(status)
            } else {
                err("ampctl: promoted: \(status.project) is a primary and takes writes; bring the old primary back as its standby: stop it, then `ampctl replica rejoin OLD --from \(status.project)`")
            }
            return .success
        }
    }
}
