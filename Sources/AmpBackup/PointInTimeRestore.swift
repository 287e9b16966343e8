#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import CFiles
import ChildProcess
import Logging
import Synchronization
import SystemSupport
import ThreadSupport

/// What a restore to a moment made.
public struct RecoveredCluster: Sendable, Equatable {
    /// The data directory, a promoted cluster, stopped.
    public var dataDirectory: String
    /// The base backup it began from.
    public var backup: String
    /// The time of the last transaction it holds (seconds since the epoch; nil: none replayed).
    public var reachedTime: Double?
    /// The WAL position where replay ended.
    public var reachedLSN: LSN?
    /// The WAL replayed, in bytes.
    public var replayedBytes: UInt64
    /// Set when replay ended before the archive's end although more was asked for: which WAL
    /// was damaged or missing.
    public var stoppedEarly: String?
}

extension BackupArchive {
    /// The base backup a restore to `target` begins from: the newest one on the archive's
    /// current history that was consistent by then.
    public func chooseBackup(for target: RestoreTarget, postgresVersion: String?) throws(BackupError) -> (BaseBackup, RestorePoint?, TimelineHistory) {
        let files = walFiles()
        let point: RestorePoint?
        if case .point(let name) = target {
            guard let found = restorePoints().last(where: { $0.name == name }) else {
                let known = restorePoints().map(\.name)
                throw BackupError(.usage, "no restore point named \(name)\(known.isEmpty ? " (there are none; make one with `ampctl restore-point NAME`)" : "; known: " + known.suffix(10).joined(separator: ", "))")
            }
            point = found
        } else {
            point = nil
        }
        // A restore point lies on its own timeline (maybe one a later restore left behind).
        let history = point.map { self.history(of: $0.timeline) } ?? newestHistory(files: files)
        let all = backups()
        let candidates = all.filter { b in
            history.contains(timeline: b.timeline, upTo: b.endLSN) && (postgresVersion == nil || b.postgresVersion == postgresVersion) && b.chain(in: all) != nil
        }
        guard let newest = candidates.last else {
            if let other = all.last, let postgresVersion, other.postgresVersion != postgresVersion {
                throw BackupError(.notRestorable, "the archive's base backups are of PostgreSQL \(other.postgresVersion), the cluster is \(postgresVersion); restore with that version's binaries")
            }
            throw BackupError(.notRestorable, "the archive \(directory) has no base backup yet; take one with `ampctl backup create`")
        }
        switch target {
        case .latest: return (newest, nil, history)
        case .time(let t):
            guard let b = candidates.last(where: { $0.finished <= t }) else {
                let first = candidates.first?.finished ?? newest.finished
                throw BackupError(.notRestorable, "\(isoTime(t)) is before the earliest restorable moment, \(isoTime(first)) (the oldest base backup); choose a later time (`ampctl backup list` shows the range)")
            }
            return (b, nil, history)
        case .point(let name):
            guard let point else { throw BackupError(.usage, "no restore point named \(name)") }
            guard let b = candidates.last(where: { $0.endLSN <= point.lsn }) else {
                throw BackupError(.notRestorable, "restore point \(name) (\(isoTime(point.time))) is older than every kept base backup; it can no longer be restored")
            }
            return (b, point, history)
        }
    }

    /// Where the archive's WAL ends, as far as its files tell: for a finished newest segment,
    /// that segment's start (it holds WAL to its end, or to a switch record); for a partial
    /// one, the end of its last written page (`pg_receivewal` pads the segment it writes with
    /// zeros; a page whose header magic is zero was never written).
    public func walEnd(files: [WALFile], segmentSize: UInt64 = WALFile.defaultSegmentSize) -> LSN? {
        guard let last = files.last(where: { $0.kind != .history }) else { return nil }
        let start = last.segment &* segmentSize
        guard last.kind == .partial else { return LSN(start) }
        let fd = open(path(of: last), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return LSN(start) }
        defer { close(fd) }
        let page = 8192
        var header = [UInt8](repeating: 0, count: 2)
        var written: UInt64 = 0
        var offset: UInt64 = 0
        while offset < segmentSize {
            let n = pread(fd, &header, 2, off_t(offset))
            guard n == 2 else { break }
            if header[0] == 0 && header[1] == 0 { break }
            offset += UInt64(page)
            written = offset
        }
        // Nothing written yet: the WAL ends in the segment before.
        if written == 0 { return LSN(start >= segmentSize ? start - segmentSize : 0) }
        return LSN(start &+ written)
    }

    /// Restores the archive to `target` into the new directory `dataDirectory`: copies the
    /// chosen base backup there, starts it (its socket in that directory, no TCP) with the archive as its WAL
    /// source until it reaches the target and is promoted, then stops it. The current cluster
    /// is not touched; a failure removes `dataDirectory`.
    ///
    /// Server parameters for the replay (`postgres -c`): `restore_command = 'cp ARCHIVE/wal/%f %p
    /// || cp ARCHIVE/receiving/%f %p || …/%f.partial …'` (a segment being written, or the last
    /// one of an abandoned timeline, is `.partial`),
    /// `recovery_target_time`/`recovery_target_name` (none for `latest`: to the archive's end),
    /// `recovery_target_action = promote`, `recovery_target_timeline = latest`,
    /// `hot_standby = off` (ready only once promoted) and `log_startup_progress_interval = 1s`
    /// (the progress); see <https://www.postgresql.org/docs/15/runtime-config-wal.html#RUNTIME-CONFIG-WAL-ARCHIVE-RECOVERY>.
    public func recover(
        to target: RestoreTarget, into dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion,
        account: ProcessCredentials?, timeout: Duration,
        progress: @escaping @Sendable (_ replayed: UInt64, _ total: UInt64) -> Void = { _, _ in }
    ) async throws(BackupError) -> RecoveredCluster {
        guard !directory.contains("'") && !directory.contains("\n") else {
            throw BackupError(.usage, "the archive's path \(directory) contains a quote or a line break, which restore_command cannot carry; move the archive ([backup] target)")
        }
        let (backup, point, history) = try chooseBackup(for: target, postgresVersion: "\(version.majorNumber)")
        // The WAL of the history replay follows (not that of timelines it left).
        let files = walFiles().filter { $0.kind == .history || $0.timeline == history.timeline(ofSegment: $0.segment) }
        let end = walEnd(files: files)
        // Progress counts whole segments for finished ones.
        let endForProgress = end.map { $0.value % WALFile.defaultSegmentSize == 0 ? $0.value + WALFile.defaultSegmentSize : $0.value } ?? 0
        let total = endForProgress > backup.endLSN.value ? endForProgress - backup.endLSN.value : 0
        let first = try await replay(backup, target: target, point: point, into: dataDirectory, binaries: binaries, version: version,
                                     account: account, timeout: timeout, total: total, progress: progress)
        switch first {
        case .success(var recovered):
            recovered.stoppedEarly = stoppedEarly(recovered.reachedLSN, end: end, files: files, target: target)
            return recovered
        case .failure(let notReached):
            // A time after the last transaction: replay never met a later commit, so the
            // moment asked for is the archive's end. Replayed again, to the end.
            guard case .time = target else { throw notReached }
            var recovered = try await replay(backup, target: .latest, point: nil, into: dataDirectory, binaries: binaries, version: version,
                                             account: account, timeout: timeout, total: total, progress: progress).get()
            recovered.stoppedEarly = stoppedEarly(recovered.reachedLSN, end: end, files: files, target: .latest)
            return recovered
        }
    }

    /// Why replay ended before the archive's end, or nil.
    func stoppedEarly(_ reached: LSN?, end: LSN?, files: [WALFile], target: RestoreTarget) -> String? {
        // Replay ends at the start of the last record; a partial segment's end is a page boundary.
        guard target == .latest, let reached, let end else { return nil }
        let partialEnd = end.value % WALFile.defaultSegmentSize != 0
        guard reached.segment() < end.segment() || (partialEnd && reached.value &+ 2 * 8192 < end.value) else { return nil }
        let next = reached.segment() + 1
        let history = newestHistory(files: files)
        let missing = !files.contains { $0.kind != .history && $0.segment == next }
        let name = WALFile.segmentName(timeline: history.timeline(ofSegment: reached.segment()), segment: reached.segment())
        return missing
            ? "replay stopped at \(reached): the archive lacks the WAL after segment \(name)"
            : "replay stopped at \(reached) in segment \(name): the WAL there is damaged; what came after it was not restored"
    }

    /// One replay of `backup` into `dataDirectory` (made here, removed on failure). The
    /// failure case is the server's "recovery ended before configured recovery target was
    /// reached"; other failures are thrown.
    private func replay(
        _ backup: BaseBackup, target: RestoreTarget, point: RestorePoint?, into dataDirectory: String, binaries: PostgresBinaries,
        version: PostgresVersion, account: ProcessCredentials?, timeout: Duration, total: UInt64,
        progress: @escaping @Sendable (UInt64, UInt64) -> Void
    ) async throws(BackupError) -> Result<RecoveredCluster, BackupError> {
        try? removeTree(dataDirectory)
        if backup.parent != nil {
            try await combine(backup, into: dataDirectory, binaries: binaries, account: account, timeout: timeout)
        } else {
            do {
                try ClusterFiles.copy(path(of: backup), to: dataDirectory, owner: account)
            } catch {
                try? removeTree(dataDirectory)
                throw BackupError(.io, "cannot copy base backup \(backup.id) to \(dataDirectory): \(error.message)")
            }
        }
        // amp's record, and the socket lock files of the server the backup was taken from
        // (its socket sat in the data directory; pg_basebackup copies them).
        unlink(dataDirectory + "/" + BaseBackup.recordName)
        for name in listDirectory(dataDirectory) where name.hasPrefix(".s.PGSQL.") { unlink(dataDirectory + "/" + name) }
        let signal = dataDirectory + "/recovery.signal"
        let fd = open(signal, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd >= 0 { close(fd) }
        if let account, geteuid() == 0 { _ = lchown(signal, account.uid, account.gid) }
        let wal = walDirectory.replacing("%", with: "%%"), receiving = receivingDirectory.replacing("%", with: "%%")
        var parameters: [(String, String)] = [
            ("restore_command", "cp '\(wal)/%f' '%p' 2>/dev/null || cp '\(receiving)/%f' '%p' 2>/dev/null || cp '\(receiving)/%f.partial' '%p' 2>/dev/null || cp '\(wal)/%f.partial' '%p' 2>/dev/null"),
            ("recovery_target_timeline", "latest"), ("recovery_target_action", "promote"), ("hot_standby", "off"),
            ("archive_mode", "off"), ("synchronous_standby_names", ""),
            // The replay writes without fsync; one syncfs after the clean stop makes it durable
            // before it is used (far fewer flushes than a flush per checkpoint and file).
            ("fsync", "off"), ("log_startup_progress_interval", version.majorNumber >= 15 ? "1s" : ""),
        ]
        parameters.removeAll { $0.1.isEmpty && $0.0 == "log_startup_progress_interval" }
        switch target {
        case .latest: break
        case .time(let t): parameters.append(("recovery_target_time", Self.postgresTime(t)))
        case .point:
            if let point {
                parameters.append(("recovery_target_name", point.name))
                parameters.removeAll { $0.0 == "recovery_target_timeline" }
                parameters.append(("recovery_target_timeline", "\(point.timeline)"))
            }
        }
        return try await Recovery.run(dataDirectory: dataDirectory, parameters: parameters, target: target, backup: backup.id, binaries: binaries,
                                      version: version, account: account, timeout: timeout, start: backup.endLSN.value, total: total, progress: progress)
    }

    /// Rebuilds the full data directory of the incremental `backup` from its chain:
    /// `pg_combinebackup -o DIR FULL INCR… [--clone]` (reflinks where the file system shares
    /// extents); see <https://www.postgresql.org/docs/17/app-pgcombinebackup.html>.
    func combine(_ backup: BaseBackup, into dataDirectory: String, binaries: PostgresBinaries, account: ProcessCredentials?,
                 timeout: Duration) async throws(BackupError) {
        guard let chain = backup.chain(in: backups()) else {
            throw BackupError(.notRestorable, "backup \(backup.id) is incremental and a backup it is built on is missing; restore from an older full backup")
        }
        var arguments = ["-o", dataDirectory]
        if DiskSpace.sharesExtents(at: directory) { arguments.append("--clone") }
        arguments += chain.map { path(of: $0) }
        let out = try await runTool(binaries.path("pg_combinebackup"), arguments, application: "amp_combinebackup", account: account, deadline: .now + timeout)
        guard out.succeeded else {
            try? removeTree(dataDirectory)
            throw BackupError(.tool, "pg_combinebackup of \(chain.map(\.id).joined(separator: " + ")) failed: \(Self.lastLine(out))")
        }
    }

    /// Restores to `target` into the new directory `dataDirectory` with amp's archive
    /// (``recover(to:into:binaries:version:account:timeout:progress:)``), or with `pgBackRest`
    /// when it keeps the backups (restore points named from this archive's record; with
    /// `archiving`, the replay pushes its new timeline to the repository).
    public func recover(
        to target: RestoreTarget, into dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion,
        account: ProcessCredentials?, timeout: Duration, pgBackRest: PgBackRest?, archiving: Bool,
        progress: @escaping @Sendable (_ replayed: UInt64, _ total: UInt64) -> Void = { _, _ in }
    ) async throws(BackupError) -> RecoveredCluster {
        guard let pgBackRest else {
            return try await recover(to: target, into: dataDirectory, binaries: binaries, version: version, account: account, timeout: timeout, progress: progress)
        }
        var point: RestorePoint? = nil
        if case .point(let name) = target { point = restorePoints().last { $0.name == name } }
        return try await pgBackRest.recover(to: target, point: point, into: dataDirectory, binaries: binaries, version: version,
                                            timeout: timeout, archiving: archiving, progress: progress)
    }

    /// Flushes the file system holding `path` (syncfs(2)): the restored cluster, replayed
    /// without fsync, is on disk before it is put anywhere.
    static func syncFileSystem(of path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return amp_syncfs(fd) == 0
    }

    /// `2026-12-04 22:30:05.250+00` for `recovery_target_time`.
    static func postgresTime(_ seconds: Double) -> String {
        let whole = seconds.rounded(.down)
        let iso = isoTime(whole)  // 2026-12-04T22:30:05Z
        let micros = Int(((seconds - whole) * 1_000_000).rounded())
        let fraction = String(micros + 1_000_000).dropFirst()
        return iso.dropLast().replacing("T", with: " ") + "." + fraction + "+00"
    }
}


/// The replay of a prepared data directory (a base backup with `recovery.signal`), shared by
/// amp's archive and pgBackRest: started with `parameters` on its own socket, followed to its
/// promotion, stopped, then flushed to disk with one syncfs.
enum Recovery {
    /// The failure case is the server's "recovery ended before configured recovery target was
    /// reached"; other failures are thrown. A failure removes `dataDirectory`.
    static func run(
        dataDirectory: String, parameters: [(String, String)], target: RestoreTarget, backup: String, binaries: PostgresBinaries,
        version: PostgresVersion, account: ProcessCredentials?, timeout: Duration, start: UInt64, total: UInt64,
        progress: @escaping @Sendable (UInt64, UInt64) -> Void
    ) async throws(BackupError) -> Result<RecoveredCluster, BackupError> {
        let watcher = ReplayWatcher(start: start, total: total, progress: progress)
        // The socket goes in the data directory (or a short private one when that path is too long).
        var builder = PostgresBuilder(dataDirectory: dataDirectory).binaries(binaries, version: version)
            .developmentDefaults(false).user(account).startTimeout(timeout).logger(watcher.logger)
        for (name, value) in parameters { builder = builder.configParameter(name, value) }
        let server: PostgresServer
        do {
            server = try await builder.start()
        } catch {
            try? removeTree(dataDirectory)
            let lines = error.details + [error.message]
            if lines.contains(where: { $0.contains("recovery ended before configured recovery target was reached") }) {
                return .failure(BackupError(.notRestorable, "the archive ends before \(target)"))
            }
            let cause = lines.last { $0.contains("FATAL") || $0.contains("PANIC") } ?? error.message
            throw BackupError(.tool, "the restored cluster did not come up: \(cause.trimmingWhitespace)")
        }
        let conninfo = server.handle.conninfo
        let facts = await runOnThread(name: "amp-restore") {
            (try? LibPQ.rows(conninfo, "SELECT extract(epoch FROM pg_catalog.pg_last_xact_replay_timestamp())::float8, pg_catalog.pg_current_wal_lsn()::text"))?.first
        }
        _ = await server.stop()
        guard BackupArchive.syncFileSystem(of: dataDirectory) else {
            try? removeTree(dataDirectory)
            throw BackupError(.io, "cannot flush the restored cluster to disk (syncfs \(dataDirectory): \(String(cString: strerror(errno)))); nothing was changed")
        }
        let reachedTime = facts.flatMap { $0.first ?? nil }.flatMap { Double($0) }
        let reachedLSN = watcher.redoEnd ?? facts.flatMap { $0.count > 1 ? $0[1] : nil }.flatMap { LSN($0) }
        let replayed = reachedLSN.map { $0.value > start ? $0.value - start : 0 } ?? 0
        progress(replayed, max(total, replayed))
        return .success(RecoveredCluster(dataDirectory: dataDirectory, backup: backup, reachedTime: reachedTime, reachedLSN: reachedLSN,
                                         replayedBytes: replayed, stoppedEarly: nil))
    }
}

/// Follows a replay through the server's log: `redo in progress, elapsed time: …, current
/// LSN: 0/1E2D3C8` (every `log_startup_progress_interval`) for the progress, and `redo done at
/// 0/1E2D3C8` for where it ended.
final class ReplayWatcher: Sendable {
    private let state = Mutex<(redoEnd: LSN?, last: UInt64)>((nil, 0))
    let start: UInt64
    let total: UInt64
    let progress: @Sendable (UInt64, UInt64) -> Void

    init(start: UInt64, total: UInt64, progress: @escaping @Sendable (UInt64, UInt64) -> Void) {
        self.start = start
        self.total = total
        self.progress = progress
    }

    var redoEnd: LSN? { state.withLock { $0.redoEnd } }

    var logger: Logger {
        Logger(label: "amp.restore") { _ in ReplayLogHandler(watcher: self) }
    }

    func line(_ text: String) {
        if let r = text.firstRange(of: "current LSN: ") {
            let lsn = text[r.upperBound...].prefix { $0.isHexDigit || $0 == "/" }
            if let position = LSN(lsn), position.value > start {
                progress(position.value - start, max(total, position.value - start))
            }
        } else if let r = text.firstRange(of: "redo done at ") {
            let lsn = text[r.upperBound...].prefix { $0.isHexDigit || $0 == "/" }
            if let position = LSN(lsn) { state.withLock { $0.redoEnd = position } }
        }
    }
}

/// Hands each log message of the restore's server to its ``ReplayWatcher``.
struct ReplayLogHandler: LogHandler {
    let watcher: ReplayWatcher
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { watcher.line("\(event.message)") }
}

extension BackupArchive {
    /// The binaries that restore this archive: `binDir` when given, else the installed ones of
    /// the newest backup's major, else the first on `searchPath`; with their version.
    public func restoreBinaries(binDir: String?, searchPath: String?, pgBackRest: PgBackRest? = nil) async throws(BackupError) -> (PostgresBinaries, PostgresVersion) {
        var newest = backups().last
        if let pgBackRest { newest = try await pgBackRest.info().backups.last }
        guard let major = newest?.postgresVersion else {
            throw BackupError(.notRestorable, "\(pgBackRest.map { "the pgBackRest repository (stanza \($0.stanza))" } ?? "the archive \(directory)") has no base backup; nothing can be restored from it")
        }
        do {
            let binaries = try binDir.map { try PostgresBinaries.locate(explicit: $0, searchPath: nil) }
                ?? PostgresBinaries.installed(major: major)
                ?? PostgresBinaries.locate(explicit: nil, searchPath: searchPath)
            return (binaries, try await binaries.version(cacheDirectory: nil))
        } catch {
            throw BackupError(.tool, "\(error); install PostgreSQL \(major) or set [postgres] bin_dir")
        }
    }

    /// Puts a replayed cluster in place of a stopped one (or of none): the current cluster, if
    /// any, moves to `rollbackDirectory/metadb-before-restore-TIME` first, by renames only.
    /// - Returns: where the replaced cluster was kept, nil when there was none.
    public static func putInPlace(_ replayed: String, dataDirectory: String, rollbackDirectory: String) throws(BackupError) -> String? {
        do throws(PostgresError) {
            return try ClusterFiles.putInPlace(replayed, dataDirectory: dataDirectory, aside: rollbackDirectory + "/metadb-before-restore-" + compactTime())
        } catch {
            throw BackupError(.io, error.message)
        }
    }
}
