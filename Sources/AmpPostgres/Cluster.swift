#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Logging
import Synchronization
import SystemSupport
import ThreadSupport

/// The environment every PostgreSQL child gets: built from scratch so nothing of the caller's
/// leaks in — in particular no `LANG`/`LC_*` (a locale that does not exist on this machine
/// must not break `initdb` or the server) and no `NOTIFY_SOCKET`/`WATCHDOG_*` of our own
/// service manager.
func childEnvironment(extra: [String: String] = [:], account: ProcessCredentials?) -> [String: String] {
    var env: [String: String] = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
    for name in ["TZ", "TMPDIR"] {
        if let v = getenv(name) { env[name] = String(cString: v) }
    }
    if let account {
        env["USER"] = account.name
        env["LOGNAME"] = account.name
    } else if let user = getenv("USER") {
        env["USER"] = String(cString: user)
    }
    env.merge(extra) { _, new in new }
    return env
}

/// A data directory: checks it and creates the cluster when there is none.
struct Cluster: Sendable {
    let dataDirectory: String
    let binaries: PostgresBinaries
    let version: PostgresVersion
    let owner: ProcessCredentials?
    let logger: Logger

    /// Makes the data directory usable: refuses a cluster of another major version or a
    /// non-empty directory that is no cluster, and runs `initdb` when there is no `PG_VERSION`.
    func prepare(
        locale: String, encoding: String, initdbArguments: [String], timeout: Duration,
        templateCache: ClusterTemplateCache? = nil,
        progress: @Sendable (PostgresStartPhase) -> Void = { _ in }
    ) async throws(PostgresError) {
        let parent = FileSystem.parentDirectory(dataDirectory)
        try FileSystem.makeDirectory(parent, mode: 0o700)
        try removeInterruptedInitdbs(parent: parent)
        if !FileSystem.isDirectory(dataDirectory) {
            if FileSystem.exists(dataDirectory) {
                throw PostgresError(.notACluster, "data directory \(dataDirectory) exists but is not a directory; move it away")
            }
            try FileSystem.makeDirectory(dataDirectory, mode: 0o700)
        }
        if let owner { try checkOwner(owner) }
        if let text = FileSystem.readText(dataDirectory + "/PG_VERSION") {
            let clusterMajor = text.trimmingWhitespace
            guard clusterMajor == version.major else {
                let fix = (Int(clusterMajor) ?? 0) < version.majorNumber
                    ? "upgrade the cluster: `ampctl upgrade` (it keeps the old one for `ampctl upgrade --rollback`), or point the binary directory at PostgreSQL \(clusterMajor) (e.g. /usr/lib/postgresql/\(clusterMajor)/bin)"
                    : "point the binary directory at PostgreSQL \(clusterMajor) (e.g. /usr/lib/postgresql/\(clusterMajor)/bin); a cluster cannot be downgraded"
                throw PostgresError(
                    .versionMismatch,
                    "data directory \(dataDirectory) was created by PostgreSQL \(clusterMajor), but the binaries in "
                        + "\(binaries.directory) are PostgreSQL \(version); \(fix). Nothing was changed.")
            }
            return
        }
        let contents = listDirectory(dataDirectory).filter { !$0.hasPrefix(".s.PGSQL.") }
        guard contents.isEmpty else {
            throw PostgresError(
                .notACluster,
                "data directory \(dataDirectory) is not empty but has no PG_VERSION, so it is no PostgreSQL cluster; "
                    + "move its contents away (nothing was changed)",
                details: ["found: " + contents.sorted().prefix(8).joined(separator: ", ")])
        }
        // Checked first, so a full disk is named as such and nothing half-made is left.
        if let free = DiskSpace.available(at: parent), free < DiskSpace.newClusterBytes {
            throw PostgresError(
                .diskFull,
                "not enough disk space for a new cluster: \(DiskSpace.shortfall(needs: DiskSpace.newClusterBytes, on: parent)); free some space, then start again")
        }
        progress(.initialisingCluster)
        let work = parent + "/" + temporaryPrefix + "\(getpid())"
        if let templateCache, owner == nil {
            do throws(PostgresError) {
                let started = ContinuousClock.now
                let how = try await templateCache.instantiate(
                    into: work, cluster: self, locale: locale, encoding: encoding, initdbArguments: initdbArguments, timeout: timeout)
                try moveIntoPlace(work)
                logger.info("cluster created from the template cache", metadata: [
                    "directory": "\(dataDirectory)", "copy": "\(how)", "after": "\(ContinuousClock.now - started)",
                ])
                return
            } catch {
                try? FileSystem.removeTree(work)
                if error.underlying is CancellationError { throw error }
                logger.warning("template cache not usable, running initdb instead: \(error.message)")
            }
        }
        try await initdb(in: work, locale: locale, encoding: encoding, arguments: initdbArguments, timeout: timeout)
        try moveIntoPlace(work)
        logger.info("cluster initialised", metadata: ["directory": "\(dataDirectory)", "version": "\(version)"])
    }

    /// rename(2) replaces the empty data directory with the finished cluster atomically.
    private func moveIntoPlace(_ work: String) throws(PostgresError) {
        if rename(work, dataDirectory) != 0 {
            let e = errno
            try? FileSystem.removeTree(work)
            throw FileSystem.ioError("cannot move the new cluster from \(work) to \(dataDirectory)", errno: e)
        }
    }

    private var temporaryPrefix: String { "." + FileSystem.baseName(dataDirectory) + ".initdb-" }

    /// Removes the work directories of `initdb` runs that were interrupted (by name only:
    /// they never became the data directory).
    private func removeInterruptedInitdbs(parent: String) throws(PostgresError) {
        for name in listDirectory(parent) where name.hasPrefix(temporaryPrefix) {
            logger.notice("removing the remains of an interrupted initdb", metadata: ["directory": "\(parent)/\(name)"])
            try FileSystem.removeTree(parent + "/" + name)
        }
    }

    private func checkOwner(_ owner: ProcessCredentials) throws(PostgresError) {
        guard let uid = FileSystem.owner(dataDirectory) else { return }
        if uid == 0 && listDirectory(dataDirectory).isEmpty {
            try FileSystem.chown(dataDirectory, to: (owner.uid, owner.gid), recursive: false)
            return
        }
        guard uid == owner.uid else {
            throw PostgresError(
                .permissionDenied,
                "data directory \(dataDirectory) belongs to UID \(uid), but PostgreSQL would run as \(owner.name) (UID \(owner.uid)); "
                    + "choose that account (--postgres-user) or `chown -R \(owner.name) \(dataDirectory)`")
        }
    }

    /// Creates a cluster in `work` (a temporary sibling of the data directory, renamed into
    /// place by the caller, so an interrupted `initdb` never leaves a half-made cluster where a
    /// later start would take it for a good one; or a template being built). On failure `work`
    /// is removed.
    ///
    /// Command: `initdb -D TMPDIR --locale=LOCALE --encoding=ENCODING --auth=trust
    /// [--no-instructions] [ARGS…]`
    /// - `-D`: the directory to create the cluster in (an empty directory we made, 0700);
    /// - `--locale`, `--encoding`: the cluster's default locale and encoding (default `C`, `UTF8`),
    ///   independent of the environment, which is stripped of `LANG`/`LC_*`;
    /// - `--auth=trust`: no passwords; access is limited by the socket directory's 0700 mode and
    ///   `unix_socket_permissions=0700`, and TCP is off;
    /// - `--no-instructions` (PostgreSQL 14+): no "start the server with pg_ctl" advice.
    ///
    /// See <https://www.postgresql.org/docs/15/app-initdb.html>.
    func initdb(in work: String, locale: String, encoding: String, arguments: [String], timeout: Duration) async throws(PostgresError) {
        let parent = FileSystem.parentDirectory(work)
        try FileSystem.makeDirectory(work, mode: 0o700)
        if let owner { try FileSystem.chown(work, to: (owner.uid, owner.gid), recursive: false) }
        var args = ["-D", work, "--locale=\(locale)", "--encoding=\(encoding)", "--auth=trust"]
        if version.majorNumber >= 14 { args.append("--no-instructions") }
        args += arguments
        logger.info("initialising a new cluster", metadata: ["directory": "\(work)", "initdb": "\(binaries.path("initdb"))"])
        let output = Mutex<[String]>([])
        let log = logger
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(SpawnConfiguration(
                executable: binaries.path("initdb"), arguments: args,
                environment: childEnvironment(account: owner), workingDirectory: parent,
                output: .lines { lines in
                    output.withLock { $0 += lines }
                    for line in lines { log.debug("\(line)", metadata: ["source": "initdb"]) }
                },
                credentials: owner))
        } catch {
            try? FileSystem.removeTree(work)
            if error.step == "chdir" {
                let who = owner.map { "the account \($0.name)" } ?? "this user"
                throw PostgresError(
                    .permissionDenied,
                    "\(who) cannot enter \(parent): \(error); make every directory above it traversable (chmod o+x) or choose another account (--postgres-user)",
                    underlying: error)
            }
            throw PostgresError(.initdbFailed, "\(error); check the binary directory", underlying: error)
        }
        let outcome = await raceChild(child, timeout: timeout)
        await child.waitForOutput(timeout: .seconds(2))
        let lastLines = output.withLock { Array($0.suffix(12)) }
        switch outcome {
        case .exited(let status) where status.isSuccess:
            break
        case .exited(let status):
            try? FileSystem.removeTree(work)
            if DiskSpace.indicatesFull(lastLines) {
                let cause = lastLines.first { $0.contains("No space left on device") } ?? "No space left on device"
                throw PostgresError(
                    .diskFull,
                    "initdb ran out of disk space for \(dataDirectory) (\(cause.trimmingWhitespace)): \(DiskSpace.shortfall(needs: DiskSpace.newClusterBytes, on: FileSystem.parentDirectory(work))); free some space, then start again (nothing was left behind)",
                    details: lastLines)
            }
            throw PostgresError(
                .initdbFailed,
                "initdb failed (\(status)) for \(dataDirectory): \(lastLines.last(where: { !$0.isEmpty }) ?? "no output"); "
                    + "check the locale, encoding and initdb arguments",
                details: lastLines)
        case .timedOut, .cancelled:
            child.signal(SIGKILL, group: true)
            _ = await child.wait()
            try? FileSystem.removeTree(work)
            if outcome == .cancelled {
                throw PostgresError(.startFailed, "start-up was cancelled during initdb; nothing was created", underlying: CancellationError())
            }
            throw PostgresError(
                .startTimedOut,
                "initdb did not finish within \(timeout) for \(dataDirectory); raise the start timeout",
                details: lastLines)
        }
    }
}

enum ChildOutcome: Sendable, Equatable {
    case exited(TerminationStatus)
    case timedOut
    case cancelled
}

/// Waits for a child to exit, bounded by `timeout` and by cancellation of the calling task.
func raceChild(_ child: ChildProcess, timeout: Duration) async -> ChildOutcome {
    let race = Race<ChildOutcome>()
    child.onExit { race.resolve(.exited($0)) }
    return await race.wait(orAfter: timeout, .timedOut, onCancel: .cancelled)
}
