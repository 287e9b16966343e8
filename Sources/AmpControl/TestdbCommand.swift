#if canImport(Glibc)
import Glibc
#endif
import AmpProtocol
import ArgumentParser
import ChildProcess
import SystemSupport

/// `ampctl testdb [--template DB] -- CMD ARGS…`: runs CMD against a throwaway database.
struct TestdbCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "testdb",
        abstract: "Run a command with DATABASE_URL and PG* of a throwaway clone of a template database, dropped when it exits.",
        discussion: """
            ampd hands out a clone made ahead of time when the template is unchanged (no CREATE DATABASE while you wait).
            The database is dropped when the command exits, whatever its exit, and also when ampctl itself is killed (ampd drops it when the call's connection closes).
            Exit status: the command's (128 + N when a signal ended it).

            """)

    @Option(name: .customLong("template"), help: ArgumentHelp("The database to clone (default: the project's default database).", valueName: "DB")) var template: String?
    @OptionGroup var selection: ProjectSelection
    var name: String? { selection.project }
    @Option(name: .customLong("address"), help: ArgumentHelp("Varlink address of ampd.", valueName: "unix:PATH")) var address: String?
    @Argument(parsing: .postTerminator, help: "The command and its arguments.") var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("name the command after --, e.g. ampctl testdb -- npm test") }
        if let template, let reason = Metadb.databaseNameProblem(template) { throw ValidationError("--template \(template): \(reason)") }
    }

    func run() async throws {
        var exit: Int32 = 0
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            guard let executable = findExecutable(command[0]) else {
                throw AmpctlError(.unavailable, "\(command[0]): command not found on PATH; give its full path, or add its directory to PATH")
            }
            let project = try resolveProject(name, address: address, environment: Platform.current.environment)
            let client = try connect(project)
            let lease: TestDatabaseLease
            do throws(MetadbClientError) { lease = try await client.acquireTestDatabase(template: template) } catch { throw AmpctlError(error, project: project) }
            err("ampctl: \(lease.reply.database), a clone of \(template ?? "the default database") (\(lease.reply.pooled ? "made ahead of time" : "made now")); dropped when \(command[0]) exits")
            var environment = Platform.current.environment
            environment.merge(lease.reply.environment) { _, new in new }
            // The terminal's Ctrl-C and Ctrl-\\ reach the command (same process group); ampctl
            // outlives it to drop the database.
            signal(SIGINT, SIG_IGN)
            signal(SIGQUIT, SIG_IGN)
            let status: TerminationStatus
            do {
                let child = try await ChildProcess.spawn(SpawnConfiguration(
                    executable: executable, arguments: Array(command.dropFirst()), environment: environment,
                    output: .inherit, deathSignal: SIGTERM, newProcessGroup: false))
                status = await child.wait()
            } catch {
                lease.end()
                throw AmpctlError(.unavailable, "cannot start \(command[0]): \(error)")
            }
            // Dropped now, on a second connection (the first is held by the call), then the call ends.
            if let second = try? MetadbClient(path: project.socket) { try? await second.releaseTestDatabase(lease.reply.database) }
            lease.end()
            switch status {
            case .exited(let code): exit = code
            case .signaled(let s): exit = 128 + s
            }
            return .success
        }
        if exit != 0 { throw ExitCode(exit) }
    }
}
