#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpConfig
import AmpPostgres
import AmpProtocol
import AmpRegistry
import ChildProcess
import ArgumentParser
import Synchronization
import SystemSupport
import Varlink

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "The continuous archive: base backups and the WAL after them, for restores to any moment (`ampctl restore --to`).",
        discussion: """
            While the project runs, ampd streams its WAL into the archive ([backup] target, default .amp/backup) within about a \
            second of each commit, takes a base backup at once and every [backup] base_interval (incremental ones on PostgreSQL \
            17+), and removes what is older than [backup] window (or over max_size). With [backup] engine = "pgbackrest", \
            pgBackRest keeps them instead, in any repository it supports, such as S3 (see amp.toml(5)).
            It protects against a DROP TABLE, a bad migration or a deleted .amp/metadb; put the target on another disk to survive \
            the loss of the cluster's disk.
            """,
        subcommands: [BackupListCommand.self, BackupCreateCommand.self, BackupVerifyCommand.self])
}

struct BackupListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the base backups and the range a restore can reach.")
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let reply = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.backups() }
            if options.json {
                outJSON(.object((try? JSONValueEncoder().encodeObject(reply)) ?? [:]))
                return .success
            }
            let width = max(17, reply.backups.map(\.id.count).max() ?? 0)
            out("ID".padding(toLength: width) + "  FINISHED              SIZE       PG  TL  VERIFIED")
            for b in reply.backups {
                out(b.id.padding(toLength: width) + "  " + b.finished.padding(toLength: 20) + "  " + humanBytes(b.sizeBytes).padding(toLength: 9) + "  "
                    + b.postgresVersion.padding(toLength: 2) + "  " + "\(b.timeline)".padding(toLength: 2) + "  " + (b.verified ?? "-") + (b.parent.map { "  (incremental on \($0))" } ?? ""))
            }
            out(archiveLine(reply.archive))
            for p in reply.archive.restorePoints { out("restore point \(p)") }
            if let problem = reply.archive.problem { err("ampctl: \(problem)") }
            return .success
        }
    }
}

/// "restorable from T0 to T1 (archive lag 0.3 s)", or why nothing is.
func archiveLine(_ a: MetadbArchive) -> String {
    guard let from = a.restorableFrom, let to = a.restorableTo else { return "nothing restorable yet (archive \(a.state), \(a.target))" }
    let lag = a.lagSeconds.map { "archive lag \(($0 * 10).rounded() / 10) s; " } ?? ""
    return "restorable from \(from) to \(to) (\(lag)\(a.state); \(humanBytes(a.sizeBytes)) in \(a.target))"
}

struct BackupCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Take a base backup now, online (pg_basebackup, checked with pg_verifybackup; or pgbackrest backup).")
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            err("ampctl: taking a base backup (PostgreSQL keeps serving)")
            let b = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.createBackup() }
            if options.json { outJSON(.object((try? JSONValueEncoder().encodeObject(b)) ?? [:])) } else {
                err("ampctl: base backup \(b.id) taken (\(humanBytes(b.sizeBytes)), \(b.startLSN)–\(b.endLSN)); check it with `ampctl backup verify`")
            }
            return .success
        }
    }
}

struct BackupVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Restore the newest base backup and its WAL into a scratch directory, check it (pg_verifybackup or pgbackrest verify, pg_amcheck, a query), remove it.")
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            err("ampctl: verifying the newest base backup (a scratch restore; PostgreSQL keeps serving)")
            let reply = try await withProgress(name, address: options.address) { client throws(MetadbClientError) in try await client.verifyBackup() }
            if options.json { outJSON(.object((try? JSONValueEncoder().encodeObject(reply)) ?? [:])) } else {
                for c in reply.checks { out("ok  \(c)") }
                err("ampctl: backup \(reply.backup) is sound")
            }
            return .success
        }
    }
}

struct RestorePointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-point", abstract: "Name the current moment, for `ampctl restore --to NAME` (pg_create_restore_point).")
    @Argument(help: "The name (letters, digits, _ - . :).") var point: String
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            if let problem = BackupArchive.restorePointNameProblem(point) { throw AmpctlError(.usage, "restore point \(point): \(problem)") }
            let reply = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.createRestorePoint(point) }
            if options.json { outJSON(.object(["name": .string(point), "lsn": .string(reply.lsn), "time": .string(reply.time)])) } else {
                err("ampctl: restore point \(point) at \(reply.time) (\(reply.lsn)); go back to it with `ampctl restore --to \(point)`")
            }
            return .success
        }
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Bring back the cluster as it was at a moment: in place (asks first), or --into DIR as a new project beside this one.",
        discussion: """
            --to takes an ISO time (2026-12-04T22:30:00Z; without a zone, UTC), "10 minutes ago", latest (the archive's end: \
            after a deleted .amp/metadb) or a restore point's name.
            In place, the current cluster is kept until the restored one is up, and a restore point before-restore-TIME marks \
            the moment before, so a restore can itself be undone.
            --into leaves the current cluster untouched and opens the moment as its own project (registered, and started when a \
            systemd user manager runs), to look at it or copy rows back.
            """)
    @Option(name: .customLong("to"), help: ArgumentHelp("The moment: ISO time, \"N minutes ago\", latest, or a restore point.", valueName: "TIME"))
    var target: String
    @Option(name: .customLong("into"), help: ArgumentHelp("Restore into this directory as a new project instead of in place.", valueName: "DIR"))
    var into: String?
    @Option(name: .customLong("name"), help: ArgumentHelp("The new project's name (with --into; default: from the directory).", valueName: "NAME"))
    var newName: String?
    var name: String? { options.selection.project }
    @Flag(help: "Do not ask first.") var yes = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let parsed: RestoreTarget
            switch RestoreTarget.parse(target, now: epochNow()) {
            case .success(let t): parsed = t
            case .failure(let e): throw AmpctlError(.usage, e.message)
            }
            if let into { return try await restoreInto(into, parsed) }
            if newName != nil { throw AmpctlError(.usage, "--name names the new project of --into; add --into DIR or drop --name") }
            let project = try resolveProject(name, address: options.address, environment: Platform.current.environment)
            try confirm("Replace the cluster of \(project.name) with its state at \(target)? Changes made after that moment leave the cluster (the archive keeps them: a restore point before-restore-… marks them), and connections are ended.", yes: yes)
            // Through ampd when it runs (also when its cluster is gone); else here, under the
            // project's lock.
            let running = (try? await connect(project).status(timeout: .seconds(5))) != nil
            guard running else { return try await restoreStopped(project, parsed) }
            let r = try await withProgress(name, address: options.address) { client throws(MetadbClientError) in try await client.restore(to: target) }
            if options.json { outJSON(.object((try? JSONValueEncoder().encodeObject(r)) ?? [:])) } else {
                err("ampctl: restored to \(r.reachedTime.map { "the last transaction before it, \($0)" } ?? "the backup \(r.backup) (no transaction after it)"); \(humanBytes(r.replayedBytes)) of WAL replayed from backup \(r.backup)")
            }
            if let early = r.stoppedEarly { err("ampctl: warning: \(early)") }
            return .success
        }
    }

    /// In place while no ampd serves the project (stopped, or failed because its data
    /// directory is gone): the archive is replayed beside the cluster under the project's
    /// lock, the cluster (if any) moves to `.amp/rollback/`, and the unit is started again.
    private func restoreStopped(_ project: Project, _ parsed: RestoreTarget) async throws(AmpctlError) -> ExitStatus {
        let ampDir = AmpDirectory(base: project.base, source: .flag)
        err("ampctl: \(project.name) is not running; restoring here (ampd is not needed)")
        let recovered = try await withLock(ampDir) { () async throws(AmpctlError) -> RecoveredCluster in
            let staging = ampDir.path + "/.pitr-\(getpid())"
            let recovered = try await recoverLocally(project, parsed, into: staging, inPlace: true)
            do throws(BackupError) {
                if let kept = try BackupArchive.putInPlace(staging, dataDirectory: ampDir.metadb, rollbackDirectory: ampDir.rollbackDirectory) {
                    err("ampctl: the replaced cluster is kept in \(kept) (remove it with `ampctl gc` once you are sure)")
                }
            } catch {
                if access(ampDir.metadb, F_OK) == 0 { try? removeTree(staging) }
                throw AmpctlError(.cannotCreate, error.message)
            }
            return recovered
        }
        var started = false
        if project.registered, await userManagerRunning() {
            _ = await runCaptured("systemctl", ["--user", "reset-failed", "amp@\(project.name).service"])
            started = (await runCaptured("systemctl", ["--user", "start", "amp@\(project.name).service"])).0 == 0
        }
        report(recovered, json: ["name": .string(project.name), "path": .string(project.base), "started": .bool(started)])
        err(started ? "ampctl: amp@\(project.name) started again; see `ampctl status \(project.name)`" : "next: \(startHint(project))")
        return .success
    }

    /// Replays the project's archive to `target` into `dataDirectory` with the project's
    /// binaries (`[postgres] bin_dir`, else the installed ones of the backup's major), as the
    /// project directory's owner when run as root. Progress on standard error past a second.
    private func recoverLocally(_ project: Project, _ target: RestoreTarget, into dataDirectory: String, inPlace: Bool) async throws(AmpctlError) -> RecoveredCluster {
        let env = Platform.current.environment
        let source = AmpDirectory(base: project.base, source: .flag)
        let layers: ConfigurationLayers
        do {
            layers = try ConfigurationLayers.load(ampDir: source, environment: env, workingDirectory: Platform.current.workingDirectory) { _ in }
        } catch {
            throw AmpctlError(.config, error.message)
        }
        let settings = layers.settings
        let archiveDirectory = settings.backupTarget ?? source.path + "/backup"
        let archive = BackupArchive(directory: archiveDirectory)
        var account: ProcessCredentials? = nil
        if geteuid() == 0 {
            var st = stat()
            guard stat(project.base, &st) == 0, st.st_uid != 0, let owner = ProcessCredentials.lookup(uid: st.st_uid) else {
                throw AmpctlError(.noPermission, "PostgreSQL refuses root and \(project.base) belongs to root; run ampctl as the project's owner")
            }
            account = owner
        }
        var pgBackRest: PgBackRest? = nil
        let binaries: PostgresBinaries, version: PostgresVersion
        do throws(BackupError) {
            if settings.backupEngine == .pgbackrest {
                var engine = try PgBackRest.forProject(
                    ampDirectory: source.path, dataDirectory: source.metadb, target: archiveDirectory, repository: settings.backupRepository,
                    window: Double(settings.backupWindow.components.seconds), projectName: project.name, environment: env)
                engine.account = account
                try engine.writeConfiguration()
                pgBackRest = engine
            }
            (binaries, version) = try await archive.restoreBinaries(binDir: settings.binDir, searchPath: env["PATH"], pgBackRest: pgBackRest)
        } catch {
            throw AmpctlError(error.code == .notRestorable ? .noInput : .unavailable, error.message)
        }
        let started = ContinuousClock.now
        let shown = Mutex(ContinuousClock.now)
        do throws(BackupError) {
            // In place, the restored cluster keeps the stanza and pushes its new timeline there;
            // --into makes another project, which must not write into this one's repository.
            return try await archive.recover(to: target, into: dataDirectory, binaries: binaries, version: version, account: account,
                                             timeout: .seconds(24 * 3600), pgBackRest: pgBackRest, archiving: inPlace) { replayed, total in
                guard ContinuousClock.now - started > .seconds(1) else { return }
                let due = shown.withLock { last -> Bool in
                    guard ContinuousClock.now - last > .seconds(1) else { return false }
                    last = ContinuousClock.now
                    return true
                }
                if due { err("ampctl: replayed \(replayed >> 20)\(total > replayed ? " of \(total >> 20)" : "") MB of WAL") }
            }
        } catch {
            try? removeTree(dataDirectory)
            throw AmpctlError(error.code == .notRestorable ? .noInput : (error.code == .usage ? .usage : .failure), error.message)
        }
    }

    private func report(_ recovered: RecoveredCluster, json fields: JSONObject) {
        if options.json {
            var o = fields
            o["backup"] = .string(recovered.backup)
            o["reached_time"] = recovered.reachedTime.map { .string(isoTime($0)) } ?? .null
            o["replayed_bytes"] = .int(Int64(clamping: recovered.replayedBytes))
            o["stopped_early"] = recovered.stoppedEarly.map { .string($0) } ?? .null
            outJSON(.object(o))
        } else {
            err("ampctl: restored to \(recovered.reachedTime.map { "the last transaction before it, \(isoTime($0))" } ?? "backup \(recovered.backup)"); \(humanBytes(Int64(clamping: recovered.replayedBytes))) of WAL replayed")
        }
        if let early = recovered.stoppedEarly { err("ampctl: warning: \(early)") }
    }

    /// `--into DIR`: replays the archive into DIR/.amp/metadb (the current cluster is not
    /// touched), then registers DIR as a project of its own and starts it.
    private func restoreInto(_ directory: String, _ parsed: RestoreTarget) async throws(AmpctlError) -> ExitStatus {
        let env = Platform.current.environment
        let cwd = Platform.current.workingDirectory
        let project = try resolveProject(name, address: options.address, environment: env)
        let base = normalizePath(directory.hasPrefix("/") ? directory : cwd + "/" + directory)
        if base == project.base { throw AmpctlError(.usage, "--into \(directory) is the project itself; restore in place without --into, or name another directory") }
        let target = AmpDirectory(base: base, source: .flag)
        if access(target.path, F_OK) == 0 {
            throw AmpctlError(.dataError, "\(target.path) exists already; choose a directory without a project (--into DIR)")
        }
        let newProject = newName ?? suggestedInstanceName(forBase: base)
        guard isValidInstanceName(newProject) else { throw AmpctlError(.usage, "--name \(newProject): use 1–64 of letters, digits, '-', '_', '.', starting with a letter or digit") }
        guard let registryDir = Registry.defaultDirectory(environment: env) else { throw AmpctlError(.cannotCreate, "no home directory for the registry") }
        let registry = Registry(directory: registryDir)
        if registry.load().0.contains(where: { $0.name == newProject }) {
            throw AmpctlError(.dataError, "the name \(newProject) is taken; choose another with --name")
        }
        let madeBase = access(base, F_OK) != 0
        do {
            if madeBase { try makeDirectories(base, mode: 0o755) }
            try target.ensureLayout()
        } catch {
            throw AmpctlError(.cannotCreate, "cannot create \(target.path): \(error)")
        }
        err("ampctl: restoring \(project.name) to \(self.target) into \(target.metadb) (the current cluster is not touched)")
        let recovered: RecoveredCluster
        do {
            recovered = try await recoverLocally(project, parsed, into: target.metadb, inPlace: false)
        } catch {
            try? removeTree(target.path)
            if madeBase { rmdir(base) }
            throw error
        }
        let note = "# Restored from \(project.name) (\(project.base)) to \(self.target) by ampctl restore --into.\n"
        try? writeFileAtomically(target.configFile, Array(note.utf8), mode: 0o644)
        do {
            try registry.write(RegistryEntry(name: newProject, base: base, autostart: false))
        } catch {
            throw AmpctlError(.cannotCreate, "the restored cluster is in \(target.metadb), but registering it failed: \(error); run `ampctl init --name \(newProject) \(base)`")
        }
        let done = try await makeUnitsAvailable(env)
        var startedUnit = false
        if await userManagerRunning() {
            startedUnit = (await runCaptured("systemctl", ["--user", "start", "amp@\(newProject).service"])).0 == 0
        }
        report(recovered, json: ["name": .string(newProject), "path": .string(base), "started": .bool(startedUnit)])
        err("ampctl: registered \(base) as amp@\(newProject) (\(done))")
        err(startedUnit ? "ampctl: amp@\(newProject) started; connect with `ampctl psql \(newProject)`"
            : "next: systemctl --user start amp@\(newProject)   (or in the foreground: ampd run --amp-dir '\(base)')")
        return .success
    }
}

/// Runs a long call while printing the project's `operation` status (a restore's replay)
/// once it has taken more than a second.
func withProgress<T: Sendable>(_ name: String?, address: String?, _ body: @escaping @Sendable (MetadbClient) async throws(MetadbClientError) -> T) async throws(AmpctlError) -> T {
    let project = try resolveProject(name, address: address, environment: Platform.current.environment)
    let client = try connect(project)
    let watcher = try connect(project)
    let result: Result<T, MetadbClientError> = await withTaskGroup(of: Result<T, MetadbClientError>?.self) { group in
        group.addTask {
            do throws(MetadbClientError) { return .success(try await body(client)) } catch { return .failure(error) }
        }
        group.addTask {
            var last: String? = nil
            try? await Task.sleep(for: .seconds(1))
            while !Task.isCancelled {
                if let op = try? await watcher.status(timeout: .seconds(5)).operation, op != last {
                    err("ampctl: \(op)")
                    last = op
                }
                try? await Task.sleep(for: .seconds(1))
            }
            return nil
        }
        var outcome: Result<T, MetadbClientError>? = nil
        while outcome == nil, let next = await group.next() {
            if let next { outcome = next }
        }
        group.cancelAll()
        return outcome ?? .failure(.transport("the call ended without an answer"))
    }
    switch result {
    case .success(let value): return value
    case .failure(let error): throw AmpctlError(error, project: project)
    }
}
