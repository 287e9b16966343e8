#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import ServiceLifecycle
import Synchronization
import SystemSupport
import ThreadSupport

/// What `[backup]` asks of the archive, typed.
struct BackupPolicy: Sendable {
    var synchronous: Bool
    /// Whether the receiver flushes each write (`--synchronous`): only with `synchronous`.
    /// Flushing each write in the durable profile too was measured (make bench, 2026-12-05):
    /// 0.89 × the tps with the archive off, against 1.02 × without; the receiver then flushes
    /// at each segment's end, and the cluster itself holds what the archive has not flushed.
    var flushEachWrite: Bool
    /// Seconds between scheduled base backups.
    var interval: Double
    /// Seconds restores reach back.
    var window: Double
    var maxBytes: UInt64
    /// The server's major version (17+: incremental base backups).
    var major: Int
}

/// The continuous archive of the running cluster: keeps `pg_receivewal` streaming into it
/// (restarted with a back-off when it ends), takes base backups (a first one, one after a
/// gap, then every `base_interval`), applies retention, and puts its state in the status.
/// Base backups, from the schedule or `CreateBackup`, run one at a time.
final class BackupCoordinator: Sendable {
    let archive: BackupArchive
    let archiver: WALArchiver
    let board: StatusBoard
    let logger: Logger
    let policy: BackupPolicy
    /// One kept connection for the lag query (closed with the others before a clone).
    let session: LibPQSessionSlot
    /// pgBackRest, when it keeps the backups instead of amp's archive (`[backup] engine`).
    let pgBackRest: PgBackRest?
    /// The newest `pgbackrest info` and when it was read (a network call for S3: once a minute).
    private let repository = Mutex<(info: PgBackRestInfo?, read: Double)>((nil, 0))
    private let busy = Mutex(false)
    /// When a scheduled base backup was last tried (a failing one is retried after a minute).
    private let lastAttempt = Mutex(0.0)
    /// Set when the archive lost continuity (a new slot, a new generation): a base backup is due.
    private let needsBase = Mutex(false)
    private let lastRetention = Mutex(0.0)

    /// How often the archive's state is refreshed and the schedule looked at while streaming.
    static let tickInterval = Duration.seconds(5)

    init(archive: BackupArchive, archiver: WALArchiver, board: StatusBoard, logger: Logger, policy: BackupPolicy, session: LibPQSessionSlot, pgBackRest: PgBackRest?) {
        self.session = session
        self.pgBackRest = pgBackRest
        self.archive = archive
        self.archiver = archiver
        self.board = board
        self.logger = logger
        self.policy = policy
    }

    // MARK: - base backups

    /// Takes a base backup (after any under way), then applies retention. With pgBackRest:
    /// a full backup when none finished within the window, else an incremental one (pgBackRest
    /// expires what its retention no longer keeps after each backup).
    func takeBaseBackup(reason: String) async throws(BackupError) -> BaseBackup {
        while busy.withLock({ let was = $0; if !was { $0 = true }; return was }) {
            do { try await Task.sleep(for: .milliseconds(200)) } catch { throw BackupError(.tool, "cancelled while another base backup ran") }
        }
        defer { busy.withLock { $0 = false } }
        guard let handle = board.handle else { throw BackupError(.tool, "PostgreSQL is not ready; wait until `ampctl status` says ready") }
        logger.info("taking a base backup (\(reason))")
        let began = ContinuousClock.now
        let backup: BaseBackup
        if let engine = pgBackRest {
            let known = await repositoryInfo(maxAge: 0)?.backups ?? []
            let kinds = repository.withLock { $0.info?.kinds ?? [:] }
            let full = !known.contains { kinds[$0.id] == "full" && epochNow() - $0.finished < policy.window }
            try await engine.backup(full: full, timeout: .seconds(6 * 3600))
            guard let newest = await repositoryInfo(maxAge: 0)?.backups.last else { throw BackupError(.tool, "pgbackrest backup ended, but pgbackrest info lists no backup") }
            backup = newest
            engine.recordBackup(newest.id)
            logger.notice("pgBackRest backup \(backup.id) (\(full ? "full" : "incremental")) taken in \(ContinuousClock.now - began) (\(backup.sizeBytes >> 20) MB into the repository, \(backup.startLSN)–\(backup.endLSN))")
        } else {
            let known = archive.backups()
            let parent = IncrementalPlan.parent(backups: known, major: policy.major, timeline: known.last?.timeline ?? 0, now: epochNow(),
                                                window: policy.window, fresh: needsBase.withLock { $0 })
            let deadline = ContinuousClock.now + .seconds(6 * 3600)
            if let parent {
                do throws(BackupError) {
                    backup = try await archive.takeBaseBackup(handle: handle, binaries: archiver.binaries, account: archiver.account, deadline: deadline, parent: parent)
                } catch {
                    // WAL summaries missing (a new timeline, a restart with summarize_wal off): a full one instead.
                    logger.warning("incremental base backup on \(parent.id) failed (\(error.message)); taking a full one")
                    backup = try await archive.takeBaseBackup(handle: handle, binaries: archiver.binaries, account: archiver.account, deadline: deadline)
                }
            } else {
                backup = try await archive.takeBaseBackup(handle: handle, binaries: archiver.binaries, account: archiver.account, deadline: deadline)
            }
            logger.notice("base backup \(backup.id)\(backup.parent.map { " (incremental on \($0))" } ?? "") taken in \(ContinuousClock.now - began) (\(backup.sizeBytes >> 20) MB, \(backup.startLSN)–\(backup.endLSN)), checked with pg_verifybackup")
        }
        needsBase.withLock { $0 = false }
        applyRetention()
        return backup
    }

    /// The base backups, oldest first: amp's archive's, or the pgBackRest repository's.
    func backups() async -> [BaseBackup] {
        guard pgBackRest != nil else { return archive.backups() }
        return archive.withRepositoryVerification(await repositoryInfo(maxAge: 60)?.backups ?? [])
    }

    /// `pgbackrest info`, read again when older than `maxAge` seconds; nil when it fails.
    func repositoryInfo(maxAge: Double) async -> PgBackRestInfo? {
        guard let engine = pgBackRest else { return nil }
        let (cached, read) = repository.withLock { ($0.info, $0.read) }
        if let cached, epochNow() - read < maxAge { return cached }
        do throws(BackupError) {
            let info = try await engine.info()
            repository.withLock { $0 = (info, epochNow()) }
            return info
        } catch {
            logger.warning("pgBackRest: \(error.message)")
            return cached
        }
    }

    /// Removes what the window and size bound no longer keep (amp's archive; pgBackRest
    /// applies its own retention after each backup).
    func applyRetention() {
        guard pgBackRest == nil else { return }
        let now = epochNow()
        lastRetention.withLock { $0 = now }
        let plan = RetentionPlan(backups: archive.backups(), walBytesBySegment: archive.walBytesBySegment(), now: now, window: policy.window, maxBytes: policy.maxBytes)
        let removed = archive.apply(plan)
        archive.removeEarlierGenerations(olderThan: now - policy.window)
        if !removed.isEmpty { logger.info("retention removed \(removed.joined(separator: " and "))") }
    }

    // MARK: - status

    /// The archive's reach and state, as the status and `ListBackups` show them.
    func describe(state: String? = nil) async -> MetadbArchive {
        if let engine = pgBackRest { return await describeRepository(engine, state: state) }
        var lag: (bytes: Int64, seconds: Double?)? = nil
        if let conninfo = board.handle?.conninfo {
            let session = self.session
            lag = await runOnThread(name: "amp-archive-lag") { (try? session.rows(conninfo, WALArchiver.lagQuery)).flatMap(WALArchiver.lag(rows:)) }
        }
        let files = archive.walFiles()
        let caughtUp = lag.map { $0.bytes == 0 || ($0.seconds ?? 0) < 5 } ?? false
        let end = caughtUp ? epochNow() : archive.lastWALWrite(files: files)
        let coverage = ArchiveCoverage(backups: archive.backups(), files: files, history: archive.newestHistory(files: files), end: end)
        let current = board.status
        return MetadbArchive(
            state: state ?? current.archive ?? "off", target: archive.directory, sizeBytes: Int64(clamping: archive.sizeBytes()),
            lagSeconds: lag.map { $0.bytes == 0 ? 0 : ($0.seconds ?? 0) }, restorableFrom: coverage.from.map(isoTime), restorableTo: coverage.to.map(isoTime),
            problem: archive.diskFullProblem() ?? coverage.problem, restorePoints: archive.restorePoints().map { "\($0.name) at \(isoTime($0.time))" })
    }

    /// The pgBackRest repository's reach: from the oldest backup to the last segment
    /// PostgreSQL archived (`pg_stat_archiver`); a failed push after the last good one is
    /// the problem. See <https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-ARCHIVER-VIEW>.
    private func describeRepository(_ engine: PgBackRest, state: String?) async -> MetadbArchive {
        let info = await repositoryInfo(maxAge: 60)
        var archived: Double? = nil
        var problem: String? = nil
        if let conninfo = board.handle?.conninfo {
            let session = self.session
            let row = await runOnThread(name: "amp-archive-lag") {
                (try? session.rows(conninfo, "SELECT extract(epoch FROM last_archived_time)::float8, last_failed_wal, extract(epoch FROM last_failed_time)::float8 FROM pg_catalog.pg_stat_archiver"))?.first
            }
            if let row, row.count == 3 {
                archived = row[0].flatMap { Double($0) }
                if let failed = row[2].flatMap({ Double($0) }), failed > (archived ?? 0) {
                    problem = "archive-push of \(row[1] ?? "a WAL segment") failed at \(isoTime(failed)); pgBackRest's error is in `ampctl logs`"
                }
            }
        }
        if info == nil { problem = problem ?? "pgbackrest info failed; see `ampctl logs`" }
        if let info, info.statusCode != 0, info.statusCode != 2 { problem = problem ?? "pgBackRest: \(info.statusMessage)" }
        let backups = info?.backups ?? []
        let to = [archived, backups.last?.finished].compactMap { $0 }.max()
        let repo = engine.options.first { $0.name == "repo1-type" }.map { type in
            "pgBackRest \(type.value) repository" + (engine.options.first { $0.name == "repo1-s3-bucket" }.map { " (bucket \($0.value))" } ?? "")
        } ?? "pgBackRest repository " + (engine.options.first { $0.name == "repo1-path" }?.value ?? "")
        return MetadbArchive(
            state: state ?? board.status.archive ?? "off", target: repo + ", stanza " + engine.stanza,
            sizeBytes: Int64(clamping: backups.reduce(UInt64(0)) { $0 &+ $1.sizeBytes }), lagSeconds: nil,
            restorableFrom: backups.first.map { isoTime($0.finished) }, restorableTo: backups.isEmpty ? nil : to.map(isoTime),
            problem: problem ?? (backups.isEmpty ? "no backup yet: the first one starts when PostgreSQL is ready" : nil),
            restorePoints: archive.restorePoints().map { "\($0.name) at \(isoTime($0.time))" })
    }

    private func publish(_ state: String, problem: String? = nil) async {
        let a = await describe(state: state)
        board.update {
            $0.archive = state
            $0.archiveLagSeconds = a.lagSeconds
            $0.restorableFrom = a.restorableFrom
            $0.restorableTo = a.restorableTo
            $0.archiveProblem = problem ?? a.problem
        }
    }

    // MARK: - the receiver

    /// Runs until cancelled: waits for a ready server, prepares the slot and the archive,
    /// streams with `pg_receivewal`, restarts it when it ends (1 s, doubling to 30 s).
    func supervise() async {
        if let engine = pgBackRest { return await superviseRepository(engine) }
        var delay = Duration.seconds(1)
        board.update { $0.archive = "starting" }
        while !Task.isCancelled {
            guard let handle = board.handle else {
                if (try? await Task.sleep(for: .milliseconds(300))) == nil { return }
                continue
            }
            if await pausedOnStandby(handle) { continue }
            let began = ContinuousClock.now
            let problem = await stream(handle)
            if Task.isCancelled { return }
            if ContinuousClock.now - began > .seconds(60) { delay = .seconds(1) }
            // PostgreSQL stopping (a maintenance job, a restart) ends the receiver too: no alarm.
            if board.handle == nil {
                board.update { $0.archive = "waiting for PostgreSQL" }
                continue
            }
            logger.warning("archiver: \(problem); restarting it in \(delay)")
            await publish("stopped: \(problem); restarting in \(delay)", problem: problem)
            if (try? await Task.sleep(for: delay)) == nil { return }
            delay = min(delay * 2, .seconds(30))
        }
    }

    /// One run of the receiver; returns why it ended.
    private func stream(_ handle: PostgresHandle) async -> String {
        let conninfo = handle.conninfo
        // The archive must belong to this cluster and be ahead of nothing it writes.
        let facts = await runOnThread(name: "amp-archive") {
            (try? LibPQ.rows(conninfo, "SELECT system_identifier::text, pg_catalog.pg_current_wal_lsn()::text, substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) FROM pg_catalog.pg_control_system()"))?.first
        }
        guard let facts, facts.count == 3, let sysid = facts[0], let position = facts[1].flatMap({ LSN($0) }),
              let tli = facts[2].flatMap({ UInt32($0, radix: 16) }) else {
            return "cannot read the cluster's system identifier and WAL position"
        }
        do throws(BackupError) {
            try archive.prepare()
            if let why = archive.continuityProblem(systemIdentifier: sysid, timeline: tli, position: position) {
                logger.warning("archive: \(why); its WAL and backups move to \(archive.directory)/earlier and a new archive begins")
                try archive.startGeneration(systemIdentifier: sysid)
                await WALArchiver.dropSlot(conninfo: conninfo)
                needsBase.withLock { $0 = true }
            } else if access(archive.systemIdentifierFile, F_OK) != 0 {
                try archive.startGeneration(systemIdentifier: sysid)
            }
        } catch {
            return error.message
        }
        // A timeline the cluster left (a restore made a new one): its partial segment is final.
        archive.settleReceived(abandoningTimelinesOtherThan: tli)
        switch await WALArchiver.ensureSlot(conninfo: conninfo) {
        case .failure(let e): return e.message
        case .success(.kept): break
        case .success(.created): needsBase.withLock { $0 = true }
        case .success(.recreatedAfterLoss):
            logger.warning("archive: the slot had lost WAL (more than [backup] max_slot_wal behind): the archive has a gap; a new base backup starts")
            needsBase.withLock { $0 = true }
        }
        let lastLines = RecentLines(capacity: 5)
        let log = logger
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(archiver.receiver(handle: handle, synchronous: policy.flushEachWrite) { lines in
                for raw in lines where !raw.isEmpty {
                    let line = raw.hasPrefix("pg_receivewal: ") ? String(raw.dropFirst(15)) : raw
                    log.info("pg_receivewal: \(line)")
                    lastLines.append([line])
                }
            })
        } catch {
            return "cannot start pg_receivewal: \(error)"
        }
        logger.info("archiving WAL into \(archive.receivingDirectory) (pg_receivewal, PID \(child.pid)\(policy.synchronous ? ", synchronous" : policy.flushEachWrite ? ", flushing each write" : ""))")
        await publish("streaming")
        // The first look comes after a second (a new archive's first base backup), then every tick.
        var wait = Duration.seconds(1)
        while true {
            if Task.isCancelled {
                child.signal(SIGTERM)
                if await child.wait(timeout: .seconds(10)) == nil { child.signal(SIGKILL, group: true) }
                _ = await child.wait()
                return "stopped"
            }
            if let status = await child.wait(timeout: wait) {
                await child.waitForOutput(timeout: .seconds(1))
                let lines = lastLines.lines
                if lines.contains(where: { $0.contains("has already been removed") }) { await WALArchiver.dropSlot(conninfo: conninfo) }
                if lines.contains(where: { $0.contains("No space left on device") }) || archive.diskFullProblem() != nil {
                    return archive.diskFullProblem() ?? "the archive's disk is full (\(archive.directory), No space left on device): free space there or move [backup] target"
                }
                // The cause, not pg_receivewal's closing "disconnected".
                let cause = lines.last { $0.contains("error:") && !$0.hasSuffix("disconnected") } ?? lines.last ?? "no output"
                return "pg_receivewal ended (\(status)): \(cause)"
            }
            wait = Self.tickInterval
            await tick()
        }
    }

    /// Whether the server is a hot standby (`ampctl replica`): its primary keeps the archive
    /// and takes the backups, so this one waits (5 s, then looks again: a promotion starts the
    /// archive). True after the wait.
    private func pausedOnStandby(_ handle: PostgresHandle) async -> Bool {
        let conninfo = handle.conninfo, session = self.session
        let standby = await runOnThread(name: "amp-archive") { (try? session.rows(conninfo, "SELECT pg_catalog.pg_is_in_recovery()"))?.first?.first == "t" }
        guard standby else { return false }
        board.update {
            $0.archive = "paused: a standby (its primary keeps the archive)"
            $0.archiveProblem = nil
            $0.archiveLagSeconds = nil
        }
        _ = try? await Task.sleep(for: .seconds(5))
        return true
    }

    /// pgBackRest's loop: once PostgreSQL is ready, the configuration with its socket and
    /// `stanza-create` (again after 30 s when it fails), then every tick the status and the
    /// schedule. PostgreSQL itself pushes the WAL (`archive_command`).
    private func superviseRepository(_ engine: PgBackRest) async {
        board.update { $0.archive = "starting" }
        var prepared = false
        while !Task.isCancelled {
            guard let handle = board.handle else {
                prepared = false
                if (try? await Task.sleep(for: .milliseconds(300))) == nil { return }
                continue
            }
            if await pausedOnStandby(handle) {
                prepared = false
                continue
            }
            if !prepared {
                do throws(BackupError) {
                    try engine.writeConfiguration(socketDirectory: handle.socketDirectory, port: handle.port, user: handle.user)
                    try await engine.createStanza()
                    prepared = true
                    logger.info("pgBackRest: stanza \(engine.stanza) ready (\(engine.configFile)); PostgreSQL pushes each WAL segment with archive-push")
                } catch {
                    logger.warning("pgBackRest: \(error.message); trying again in 30 s")
                    await publish("stopped: \(error.message); trying again in 30 s", problem: error.message)
                    if (try? await Task.sleep(for: .seconds(30))) == nil { return }
                    continue
                }
            }
            await scheduleBaseBackup(state: "archiving with pgBackRest", backups: await backups(), gap: false)
            if (try? await Task.sleep(for: Self.tickInterval)) == nil { return }
        }
    }

    /// Every tick while streaming: finished segments into `wal/`, the status, a base backup
    /// when one is due (the first, after a gap or a new archive, on the schedule; a failed one
    /// again after a minute), retention hourly.
    private func tick() async {
        archive.settleReceived()
        let backups = archive.backups()
        let files = archive.walFiles()
        let coverage = ArchiveCoverage(backups: backups, files: files, history: archive.newestHistory(files: files), end: nil)
        await scheduleBaseBackup(state: "streaming", backups: backups, gap: coverage.problem != nil)
        if epochNow() - lastRetention.withLock({ $0 }) > 3600 { applyRetention() }
    }

    /// Publishes `state`, then takes a base backup when one is due: the first, after a gap or
    /// a new archive, on the schedule (a failed one again after a minute).
    private func scheduleBaseBackup(state: String, backups: [BaseBackup], gap: Bool) async {
        await publish(state)
        let due: String?
        if needsBase.withLock({ $0 }) || backups.isEmpty {
            due = backups.isEmpty ? "the archive's first" : "the archive began anew"
        } else if gap {
            due = "a gap in the archive"
        } else if let newest = backups.last, epochNow() - newest.finished >= policy.interval {
            due = "scheduled, every \(Int(policy.interval / 60)) min"
        } else {
            due = nil
        }
        let now = epochNow()
        guard let due, !busy.withLock({ $0 }), now - lastAttempt.withLock({ $0 }) >= 60 else { return }
        lastAttempt.withLock { $0 = now }
        do {
            _ = try await takeBaseBackup(reason: due)
            lastAttempt.withLock { $0 = 0 }
        } catch {
            logger.warning("base backup failed: \(error.message); trying again in a minute")
        }
        await publish(state)
    }
}

/// The archiver as a service of the group: listed before PostgreSQL, so that it is stopped
/// after it (the receiver takes the last WAL of the shutdown, then ends).
struct ArchiverService: Service {
    let coordinator: BackupCoordinator

    func run() async throws {
        await cancelWhenGracefulShutdown { await coordinator.supervise() }
    }
}
