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
    private let busy = Mutex(false)
    /// When a scheduled base backup was last tried (a failing one is retried after a minute).
    private let lastAttempt = Mutex(0.0)
    /// Set when the archive lost continuity (a new slot, a new generation): a base backup is due.
    private let needsBase = Mutex(false)
    private let lastRetention = Mutex(0.0)

    /// How often the archive's state is refreshed and the schedule looked at while streaming.
    static let tickInterval = Duration.seconds(5)

    init(archive: BackupArchive, archiver: WALArchiver, board: StatusBoard, logger: Logger, policy: BackupPolicy, session: LibPQSessionSlot) {
        self.session = session
        self.archive = archive
        self.archiver = archiver
        self.board = board
        self.logger = logger
        self.policy = policy
    }

    // MARK: - base backups

    /// Takes a base backup (after any under way), then applies retention.
    func takeBaseBackup(reason: String) async throws(BackupError) -> BaseBackup {
        while busy.withLock({ let was = $0; if !was { $0 = true }; return was }) {
            do { try await Task.sleep(for: .milliseconds(200)) } catch { throw BackupError(.tool, "cancelled while another base backup ran") }
        }
        defer { busy.withLock { $0 = false } }
        guard let handle = board.handle else { throw BackupError(.tool, "PostgreSQL is not ready; wait until `ampctl status` says ready") }
        logger.info("taking a base backup (\(reason))")
        let began = ContinuousClock.now
        let backup = try await archive.takeBaseBackup(handle: handle, binaries: archiver.binaries, account: archiver.account, deadline: .now + .seconds(6 * 3600))
        needsBase.withLock { $0 = false }
        logger.notice("base backup \(backup.id) taken in \(ContinuousClock.now - began) (\(backup.sizeBytes >> 20) MB, \(backup.startLSN)–\(backup.endLSN)), checked with pg_verifybackup")
        applyRetention()
        return backup
    }

    /// Removes what the window and size bound no longer keep.
    func applyRetention() {
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
        var delay = Duration.seconds(1)
        board.update { $0.archive = "starting" }
        while !Task.isCancelled {
            guard let handle = board.handle else {
                if (try? await Task.sleep(for: .milliseconds(300))) == nil { return }
                continue
            }
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
        let lastLines = Mutex<[String]>([])
        let log = logger
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(archiver.receiver(handle: handle, synchronous: policy.flushEachWrite) { lines in
                for raw in lines where !raw.isEmpty {
                    let line = raw.hasPrefix("pg_receivewal: ") ? String(raw.dropFirst(15)) : raw
                    log.info("pg_receivewal: \(line)")
                    lastLines.withLock { $0 = Array(($0 + [line]).suffix(5)) }
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
                let lines = lastLines.withLock { $0 }
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

    /// Every tick while streaming: finished segments into `wal/`, the status, a base backup
    /// when one is due (the first, after a gap or a new archive, on the schedule; a failed one
    /// again after a minute), retention hourly.
    private func tick() async {
        archive.settleReceived()
        await publish("streaming")
        let backups = archive.backups()
        let files = archive.walFiles()
        let coverage = ArchiveCoverage(backups: backups, files: files, history: archive.newestHistory(files: files), end: nil)
        let due: String?
        if needsBase.withLock({ $0 }) || backups.isEmpty {
            due = backups.isEmpty ? "the archive's first" : "the archive began anew"
        } else if coverage.problem != nil {
            due = "a gap in the archive"
        } else if let newest = backups.last, epochNow() - newest.finished >= policy.interval {
            due = "scheduled, every \(Int(policy.interval / 60)) min"
        } else {
            due = nil
        }
        let now = epochNow()
        if let due, !busy.withLock({ $0 }), now - lastAttempt.withLock({ $0 }) >= 60 {
            lastAttempt.withLock { $0 = now }
            do {
                _ = try await takeBaseBackup(reason: due)
                lastAttempt.withLock { $0 = 0 }
            } catch {
                logger.warning("base backup failed: \(error.message); trying again in a minute")
            }
            await publish("streaming")
        }
        if now - lastRetention.withLock({ $0 }) > 3600 { applyRetention() }
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
