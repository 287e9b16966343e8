#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpConfig
import AmpPostgres
import AmpProtocol
import ArgumentParser
import ChildProcess
import Synchronization
import SystemSupport
import Varlink

/// `ampctl upgrade`: moves a project's cluster to a newer PostgreSQL major version with
/// `pg_upgrade`, keeping the old cluster for `--rollback` until `--finish`.
struct UpgradeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Upgrade a project's cluster to a newer PostgreSQL major version (pg_upgrade; the old cluster is kept).",
        discussion: """
            Stops the service (amp@NAME) if it runs, checks with pg_upgrade --check, makes a new cluster \
            beside the old one with the same locale, encoding and checksum setting, upgrades into it \
            with --clone where the file system can (else --copy; never --link), swaps it in atomically, \
            starts the service again, rebuilds statistics and updates extensions.
            The old cluster stays in .amp/rollback until `ampctl upgrade --finish`; `ampctl upgrade --rollback` puts it back.

            """)

    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    @Option(name: .customLong("bin-dir"), help: ArgumentHelp("The new PostgreSQL's binary directory.", valueName: "DIR")) var binDir: String?
    @Option(name: .customLong("to"), help: ArgumentHelp("The new major version, from /usr/lib/postgresql/MAJOR/bin (default: the newest installed).", valueName: "MAJOR")) var to: Int?
    @Option(name: .customLong("old-bin-dir"), help: ArgumentHelp("The cluster's own PostgreSQL binaries (default: /usr/lib/postgresql/OLD/bin).", valueName: "DIR")) var oldBinDir: String?
    @Flag(help: "Only check (pg_upgrade --check) and say what would happen.") var check = false
    @Flag(help: "Put the old cluster back (changes made since the upgrade are lost).") var rollback = false
    @Flag(help: "Drop the old cluster kept by the last upgrade.") var finish = false
    @Flag(help: "Do not ask before --rollback or --finish.") var yes = false
    @Flag(name: .customLong("json"), help: "Print the outcome as JSON.") var json = false

    func validate() throws {
        try selection.check(positionalName)
        if binDir != nil && to != nil { throw ValidationError("--bin-dir and --to both name the new version; give one") }
        if [check, rollback, finish].filter({ $0 }).count > 1 { throw ValidationError("--check, --rollback and --finish are separate steps; give one") }
        if let to, !(9...99).contains(to) { throw ValidationError("--to \(to): not a PostgreSQL major version (e.g. --to 17)") }
    }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let environment = Platform.current.environment
            let project = try resolveProject(name, address: nil, environment: environment)
            guard !project.base.isEmpty else { throw AmpctlError(.noInput, "no project directory; run ampctl upgrade in the project or name it") }
            let ampDir = AmpDirectory(base: project.base, source: .flag)
            do throws(ConfigError) { try ampDir.checkLayout() } catch { throw AmpctlError(.config, error.message) }
            try await recoverInterrupted(ampDir)
            if rollback { return try await rollBack(project, ampDir) }
            if finish { return try finishUpgrade(ampDir) }
            return try await upgrade(project, ampDir, environment: environment)
        }
    }

    // MARK: - upgrade

    private func upgrade(_ project: Project, _ ampDir: AmpDirectory, environment: [String: String]) async throws(AmpctlError) -> ExitStatus {
        let started = ContinuousClock.now
        let layers: ConfigurationLayers
        do {
            layers = try ConfigurationLayers.load(ampDir: ampDir, environment: environment, workingDirectory: Platform.current.workingDirectory) { err("ampctl: \($0)") }
        } catch {
            throw AmpctlError(.config, error.message)
        }
        let (plan, newVersion) = try await planUpgrade(project, ampDir, settings: layers.settings)
        let socketDirectory = Metadb.runtimeDirectory(environment: environment) + "/amp/upgrade-\(getpid())"
        let upgrader = ClusterUpgrader(dataDirectory: ampDir.metadb, rollbackDirectory: ampDir.rollbackDirectory, socketDirectory: socketDirectory, plan: plan)
        if check {
            if await serviceRunning(project) || lockHolder(ampDir) != nil {
                err("ampctl: \(project.name) is running; pg_upgrade --check runs once it is stopped (`ampctl upgrade` stops it first). The plan above holds.")
                return .success
            }
            let transfer = try await withLock(ampDir) { () async throws(AmpctlError) -> UpgradeTransfer in
                try await inSocketDirectory(socketDirectory) { () async throws(UpgradeError) in
                    progress(.checking)
                    return try await upgrader.check()
                }
            }
            err("ampctl: pg_upgrade --check passed; `ampctl upgrade\(project.registered ? " \(project.name)" : "")` would upgrade with --\(transfer.rawValue)")
            return .success
        }

        let wasRunning = await serviceRunning(project)
        if wasRunning {
            await setRestorePoint(project, "before-upgrade")
            progress(.stopping)
            let (code, text) = await runCaptured("systemctl", ["--user", "stop", project.unit])
            if code != 0 { throw AmpctlError(.failure, "systemctl --user stop \(project.unit) failed: \(text); nothing was changed") }
        }
        let transfer: UpgradeTransfer
        do {
            transfer = try await withLock(ampDir) { () async throws(AmpctlError) -> UpgradeTransfer in
                try await inSocketDirectory(socketDirectory) { () async throws(UpgradeError) in
                    try await upgrader.run(progress: progress)
                }
            }
        } catch {
            if wasRunning { _ = await runCaptured("systemctl", ["--user", "start", project.unit]) }
            throw error
        }
        let notes = upgrader.notes.withLock { $0 }
            + (await followUp(project, ampDir, plan: plan, newVersion: newVersion, wasRunning: wasRunning, socketDirectory: socketDirectory))
        for note in notes { err("ampctl: \(note)") }
        if let pinned = layers.settings.binDir, pinned != plan.newBinaries.directory {
            err("ampctl: bin_dir is set to \(pinned) (config.toml or AMP_PG_BIN_DIR): set it to \(plan.newBinaries.directory), or ampd refuses the upgraded cluster")
        }
        report(project, plan: plan, newVersion: newVersion, transfer: transfer, rollbackCopy: upgrader.rollbackCopy, seconds: seconds(since: started))
        return .success
    }

    /// Measures the facts (the cluster's version and checksums, the binaries, the space) and
    /// decides the plan (``UpgradePlan/decide(_:)``); says it in one line.
    private func planUpgrade(_ project: Project, _ ampDir: AmpDirectory, settings: AmpSettings) async throws(AmpctlError) -> (UpgradePlan, PostgresVersion) {
        guard let clusterMajor = InterruptedOperations.clusterMajor(ampDir.metadb) else {
            throw AmpctlError(.noInput, "\(ampDir.metadb) holds no cluster yet; nothing to upgrade (start the project once: \(startHint(project)))")
        }
        let newBinaries = try locateNew()
        let newVersion: PostgresVersion
        do { newVersion = try await newBinaries.version() } catch { throw AmpctlError(.unavailable, error.message) }
        let oldBinaries = await locateOld(clusterMajor, configured: settings.binDir)
        var checksums = false
        if let oldBinaries {
            do {
                checksums = try await ClusterUpgrader.hasChecksums(dataDirectory: ampDir.metadb, binaries: oldBinaries)
            } catch {
                throw AmpctlError(.unavailable, error.description)
            }
        }
        var facts = UpgradePlan.Facts(
            clusterMajor: clusterMajor, oldBinaries: oldBinaries, newBinaries: newBinaries, newMajor: newVersion.majorNumber,
            checksums: checksums, clusterBytes: diskUsage(ampDir.metadb), freeBytes: DiskSpace.available(at: ampDir.path),
            locale: settings.locale, encoding: settings.encoding)
        facts.sharesExtents = DiskSpace.sharesExtents(at: ampDir.path)
        let plan: UpgradePlan
        switch UpgradePlan.decide(facts) {
        case .success(let p): plan = p
        case .failure(let e): throw AmpctlError(e)
        }
        err("ampctl: \(project.name): PostgreSQL \(plan.oldMajor) (\(plan.oldBinaries.directory)) → \(newVersion) (\(plan.newBinaries.directory)); "
            + "cluster \(DiskSpace.megabytes(facts.clusterBytes)), needs \(DiskSpace.megabytes(plan.neededBytes)) free, has \(plan.freeBytes.map(DiskSpace.megabytes) ?? "an unknown amount")")
        return (plan, newVersion)
    }

    /// The new cluster is in place: starts it (the service again, or a private server), then
    /// rebuilds the statistics and updates the extensions. What it could not do is a note.
    private func followUp(
        _ project: Project, _ ampDir: AmpDirectory, plan: UpgradePlan, newVersion: PostgresVersion, wasRunning: Bool, socketDirectory: String
    ) async -> [String] {
        progress(.starting)
        do throws(AmpctlError) {
            if wasRunning {
                let (code, text) = await runCaptured("systemctl", ["--user", "start", project.unit])
                if code != 0 { throw AmpctlError(.failure, "systemctl --user start \(project.unit) failed: \(text)") }
                let connection = try await withProject(project.name, address: nil) { client async throws(MetadbClientError) in try await client.connectionInfo() }
                return await afterUpgrade(socketDirectory: connection.socketDirectory, port: connection.port, binaries: plan.newBinaries)
            }
            return try await withLock(ampDir) { () async throws(AmpctlError) -> [String] in
                try await withTemporaryServer(ampDir.metadb, binaries: plan.newBinaries, version: newVersion, socketDirectory: socketDirectory, describing: "the upgraded cluster") { handle in
                    await afterUpgrade(socketDirectory: handle.socketDirectory, port: handle.port, binaries: plan.newBinaries)
                }
            }
        } catch {
            return ["the upgrade is done, but the follow-up failed: \(error.message); run `vacuumdb --all --analyze-in-stages` yourself"]
        }
    }

    /// The outcome: JSON on stdout with --json, and the line with the next commands.
    private func report(_ project: Project, plan: UpgradePlan, newVersion: PostgresVersion, transfer: UpgradeTransfer, rollbackCopy copy: String, seconds: Double) {
        if json {
            var o: JSONObject = [:]
            o["project"] = .string(project.name)
            o["from"] = .int(Int64(plan.oldMajor))
            o["to"] = .int(Int64(plan.newMajor))
            o["transfer"] = .string(transfer.rawValue)
            o["seconds"] = .float((seconds * 1000).rounded() / 1000)
            o["rollback_copy"] = .string(copy)
            outJSON(.object(o))
        }
        let suffix = nameSuffix(project)
        let done = "ampctl: upgraded \(project.name) from PostgreSQL \(plan.oldMajor) to \(newVersion) in \(format2(seconds)) s (--\(transfer.rawValue))"
        err("\(done); the old cluster is kept in \(copy): roll back with `ampctl upgrade --rollback\(suffix)`, drop it with `ampctl upgrade --finish\(suffix)`")
    }

    private func progress(_ phase: UpgradePhase) { err("ampctl: \(phase.numbered)") }

    /// A restore point `PREFIX-TIME` in the running project's archive, when it has one (the
    /// old major's WAL stays in it); nothing when the archive is off or ampd does not answer.
    private func setRestorePoint(_ project: Project, _ prefix: String) async {
        let name = prefix + "-" + compactTime()
        if let client = try? connect(project), (try? await client.createRestorePoint(name)) != nil {
            err("ampctl: restore point \(name) set")
        }
    }

    private func nameSuffix(_ project: Project) -> String { name == nil ? "" : " \(project.name)" }

    /// The new binaries: `--bin-dir`, `--to MAJOR`, else the newest installed.
    private func locateNew() throws(AmpctlError) -> PostgresBinaries {
        do {
            if let binDir { return try PostgresBinaries.locate(explicit: absolutePath(binDir), searchPath: nil) }
            if let to {
                guard let binaries = PostgresBinaries.installed(major: "\(to)") else {
                    throw AmpctlError(.unavailable, "PostgreSQL \(to) is not installed; install it (Debian: sudo apt install postgresql-\(to)) or pass --bin-dir DIR")
                }
                return binaries
            }
            return try PostgresBinaries.locate(explicit: nil, searchPath: nil, distributionDirectories: PostgresBinaries.distributionDirectories())
        } catch let error as PostgresError {
            throw AmpctlError(.unavailable, error.message)
        } catch let error as AmpctlError {
            throw error
        } catch {
            throw AmpctlError(.failure, "\(error)")
        }
    }

    /// The cluster's own binaries: `--old-bin-dir`, the configured `bin_dir` when it is of
    /// that version, else the distribution's directory for it.
    private func locateOld(_ major: Int, configured: String?) async -> PostgresBinaries? {
        await PostgresBinaries.forMajor(major, preferring: (oldBinDir.map { [absolutePath($0)] } ?? []) + (configured.map { [$0] } ?? []))
    }

    private func afterUpgrade(socketDirectory: String, port: Int, binaries: PostgresBinaries) async -> [String] {
        await ClusterUpgrader.followUp(socketDirectory: socketDirectory, port: port, binaries: binaries, progress: progress)
    }

    // MARK: - rollback / finish

    /// The newest rollback copy (`metadb-MAJOR`, highest major first).
    static func rollbackCopies(_ ampDir: AmpDirectory) -> [(major: Int, path: String)] {
        listDirectory(ampDir.rollbackDirectory)
            .compactMap { name -> (Int, String)? in
                guard name.hasPrefix("metadb-"), let major = Int(name.dropFirst("metadb-".count)) else { return nil }
                return (major, ampDir.rollbackDirectory + "/" + name)
            }
            .sorted { $0.0 > $1.0 }
    }

    private func rollBack(_ project: Project, _ ampDir: AmpDirectory) async throws(AmpctlError) -> ExitStatus {
        guard let copy = Self.rollbackCopies(ampDir).first else {
            throw AmpctlError(.noInput, "\(project.name) has no rollback copy in \(ampDir.rollbackDirectory); nothing to roll back")
        }
        let current = FileContents.text(ampDir.metadb + "/PG_VERSION")?.trimmingWhitespace ?? "?"
        try confirm("Put PostgreSQL \(copy.major) back in place of the \(current) cluster of \(project.name)? Changes made since the upgrade are lost.", yes: yes)
        let wasRunning = await serviceRunning(project)
        if wasRunning {
            await setRestorePoint(project, "before-upgrade-rollback")
            progress(.stopping)
            let (code, text) = await runCaptured("systemctl", ["--user", "stop", project.unit])
            if code != 0 { throw AmpctlError(.failure, "systemctl --user stop \(project.unit) failed: \(text); nothing was changed") }
        }
        try await withLock(ampDir) { () async throws(AmpctlError) in
            do throws(UpgradeError) {
                try ClusterUpgrader.rollback(dataDirectory: ampDir.metadb, rollbackCopy: copy.path)
            } catch {
                throw AmpctlError(error)
            }
        }
        if wasRunning { _ = await runCaptured("systemctl", ["--user", "start", project.unit]) }
        err("ampctl: \(project.name) is back on PostgreSQL \(copy.major)\(wasRunning ? " and started again" : ""); point bin_dir at PostgreSQL \(copy.major) if you had changed it")
        return .success
    }

    private func finishUpgrade(_ ampDir: AmpDirectory) throws(AmpctlError) -> ExitStatus {
        let copies = Self.rollbackCopies(ampDir)
        guard !copies.isEmpty else { throw AmpctlError(.noInput, "no rollback copy in \(ampDir.rollbackDirectory); nothing to drop") }
        let bytes = copies.reduce(UInt64(0)) { $0 &+ diskUsage($1.path) }
        let names = copies.map { "PostgreSQL \($0.major)" }.joined(separator: ", ")
        try confirm("Drop the old cluster (\(names), \(DiskSpace.megabytes(bytes))) kept by the upgrade? It cannot be rolled back to afterwards.", yes: yes)
        for copy in copies {
            do { try removeTree(copy.path) } catch { throw AmpctlError(.cannotCreate, "\(error); remove it by hand") }
        }
        try? removeTree(ampDir.rollbackDirectory + "/upgrade-logs-\(FileContents.text(ampDir.metadb + "/PG_VERSION")?.trimmingWhitespace ?? "")")
        err("ampctl: dropped \(names) (\(DiskSpace.megabytes(bytes)) freed)")
        return .success
    }
}

// MARK: - helpers shared by commands that take the cluster over

extension AmpctlError {
    /// The exit code and message of an upgrade error.
    init(_ error: UpgradeError) {
        switch error.code {
        case .notNewer: self.init(.dataError, error.description)
        case .binariesMissing: self.init(.unavailable, error.description)
        case .noSpace: self.init(.cannotCreate, error.description)
        case .unusable: self.init(.dataError, error.description)
        case .stepFailed: self.init(.failure, error.description)
        case .noRollback: self.init(.noInput, error.description)
        }
    }
}

/// `1.234`.
func format2(_ seconds: Double) -> String { "\((seconds * 1000).rounded() / 1000)" }
