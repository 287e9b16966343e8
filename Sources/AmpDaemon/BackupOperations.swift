#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import Synchronization
import SystemSupport
import ThreadSupport

/// What the backup methods need: the coordinator, the cluster's place, its binaries and the
/// account, and the queue to the service (for the swap of a restore).
struct BackupContext: Sendable {
    var coordinator: BackupCoordinator
    var dataDirectory: String
    var binaries: PostgresBinaries
    var version: PostgresVersion
    var account: ProcessCredentials?
    var queue: MaintenanceQueue
    /// Bound on a restore's replay.
    var timeout: Duration

    var archive: BackupArchive { coordinator.archive }

    /// Restores to `target` into `dataDirectory` with whichever engine keeps the backups.
    func recover(to target: RestoreTarget, into dataDirectory: String, archiving: Bool,
                 progress: @escaping @Sendable (UInt64, UInt64) -> Void) async throws(BackupError) -> RecoveredCluster {
        try await archive.recover(to: target, into: dataDirectory, binaries: binaries, version: version, account: account, timeout: timeout,
                                  pgBackRest: coordinator.pgBackRest, archiving: archiving, progress: progress)
    }
}

extension MetadbOperations {
    // MARK: - backups

    func backupContext() throws(MetadbError) -> BackupContext {
        guard let backups else {
            throw .backupFailed(message: external == nil
                ? "the continuous archive is off ([backup] archive = false in .amp/config.toml): set it to true and restart (`ampctl restart`)"
                : "backups are \(unavailableHere)")
        }
        return backups
    }

    static func mapped(_ error: BackupError) -> MetadbError {
        error.code == .notRestorable || error.code == .usage ? .notRestorable(message: error.message) : .backupFailed(message: error.message)
    }

    static func wire(_ b: BaseBackup) -> MetadbBackup {
        MetadbBackup(id: b.id, started: isoTime(b.started), finished: isoTime(b.finished), timeline: Int(b.timeline), startLSN: "\(b.startLSN)",
                     endLSN: "\(b.endLSN)", postgresVersion: b.postgresVersion, sizeBytes: Int64(clamping: b.sizeBytes), verified: b.verified.map(isoTime),
                     parent: b.parent)
    }

    func listBackups() async throws(MetadbError) -> Metadb.ListBackups.Reply {
        let c = try backupContext()
        _ = await c.coordinator.repositoryInfo(maxAge: 0)
        return .init(backups: await c.coordinator.backups().map(Self.wire), archive: await c.coordinator.describe())
    }

    func createBackup() async throws(MetadbError) -> MetadbBackup {
        let c = try backupContext()
        _ = try readyHandle()
        do throws(BackupError) {
            return Self.wire(try await c.coordinator.takeBaseBackup(reason: "asked for"))
        } catch {
            throw Self.mapped(error)
        }
    }

    /// `pg_create_restore_point(name)`, recorded in the archive.
    /// See <https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-ADMIN-BACKUP>.
    func createRestorePoint(_ name: String) async throws(MetadbError) -> Metadb.CreateRestorePoint.Reply {
        let c = try backupContext()
        if let problem = BackupArchive.restorePointNameProblem(name) { throw .invalidDatabaseName(name: name, reason: problem) }
        if c.archive.restorePoints().contains(where: { $0.name == name }) {
            throw .notRestorable(message: "a restore point named \(name) exists already; choose another name")
        }
        let point = try await makeRestorePoint(name, c)
        return .init(lsn: "\(point.lsn)", time: isoTime(point.time))
    }

    private func makeRestorePoint(_ name: String, _ c: BackupContext) async throws(MetadbError) -> RestorePoint {
        let handle = try readyHandle()
        let conninfo = handle.conninfo
        let sql = "SELECT pg_catalog.pg_create_restore_point(\(LibPQ.quoteLiteral(name)))::text, extract(epoch FROM pg_catalog.clock_timestamp())::float8, "
            + "substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8)"
        let row: Result<[String?], LibPQError> = await runOnThread(name: "amp-restore-point") {
            do throws(LibPQError) { return .success(try LibPQ.rows(conninfo, sql).first ?? []) } catch { return .failure(error) }
        }
        switch row {
        case .failure(let e): throw .queryFailed(message: e.message, sqlstate: e.sqlState)
        case .success(let r):
            guard r.count == 3, let lsn = r[0].flatMap({ LSN($0) }), let time = r[1].flatMap({ Double($0) }), let tli = r[2].flatMap({ UInt32($0, radix: 16) }) else {
                throw .backupFailed(message: "PostgreSQL did not return the restore point's position")
            }
            let point = RestorePoint(name: name, time: time, lsn: lsn, timeline: tli)
            do throws(BackupError) { try c.archive.record(point) } catch { throw Self.mapped(error) }
            logger.info("restore point \(name) at \(lsn) (\(isoTime(time)))")
            return point
        }
    }

    /// Sets a restore point named `PREFIX-TIME` before an operation that replaces the cluster,
    /// when the archive is on; a failure is logged, never fatal.
    func automaticRestorePoint(_ prefix: String) async {
        guard let c = backups else { return }
        let name = prefix + "-" + compactTime()
        do throws(MetadbError) { _ = try await makeRestorePoint(name, c) } catch {
            logger.warning("could not set restore point \(name): \(error)")
        }
    }

    /// Waits (at most `limit`) until the archive holds all WAL written so far, after a commit
    /// record that carries the present time (so a restore to "now" finds a later commit).
    private func settleArchive(_ handle: PostgresHandle, limit: Duration) async {
        let conninfo = handle.conninfo
        let deadline = ContinuousClock.now + limit
        _ = await runOnThread(name: "amp-restore") { try? LibPQ.rows(conninfo, "SELECT pg_catalog.txid_current()") }
        while ContinuousClock.now < deadline {
            let lag = await runOnThread(name: "amp-archive-lag") { WALArchiver.lag(conninfo: conninfo) }
            if let lag, lag.bytes == 0 { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Replays the archive to `text` beside the running cluster, then swaps it in: the current
    /// cluster stays until the restored one is up (as a snapshot restore does), a restore point
    /// `before-restore-TIME` marks the moment before, and the status carries the progress.
    func restoreToTime(_ text: String) async throws(MetadbError) -> MetadbRestored {
        let c = try backupContext()
        let target: RestoreTarget
        switch RestoreTarget.parse(text, now: epochNow()) {
        case .success(let t): target = t
        case .failure(let e): throw Self.mapped(e)
        }
        // A data directory deleted under ampd: PostgreSQL is failing or already gone, and
        // the archive is all there is.
        let gone = access(c.dataDirectory + "/PG_VERSION", F_OK) != 0
        if !gone {
            let handle = try readyHandle()
            await automaticRestorePoint("before-restore")
            if let engine = c.coordinator.pgBackRest {
                // A switch to a new segment, pushed: every commit so far is in the repository.
                do throws(BackupError) { try await engine.check() } catch { logger.warning("before the restore: \(error.message)") }
            } else {
                await settleArchive(handle, limit: .seconds(10))
            }
        }
        let staging = parentDirectory(c.dataDirectory) + "/.pitr-\(getpid())"
        let board = self.board
        let label = "restoring to \(target)"
        board.update { $0.operation = "\(label): copying the base backup" }
        defer { board.update { $0.operation = nil } }
        let recovered: RecoveredCluster
        do throws(BackupError) {
            recovered = try await c.recover(to: target, into: staging, archiving: true) { replayed, total in
                let percent = total > 0 ? min(100, replayed * 100 / total) : 100
                board.update { $0.operation = total > replayed ? "\(label): replayed \(replayed >> 20) of \(total >> 20) MB of WAL (\(percent) %)" : "\(label): replayed \(replayed >> 20) MB of WAL" }
            }
        } catch {
            try? removeTree(staging)
            throw Self.mapped(error)
        }
        board.update { $0.operation = "\(label): swapping the restored cluster in" }
        if gone, board.handle == nil, access(c.dataDirectory, F_OK) != 0 {
            // No server runs: the restored cluster goes into place, and the service's next
            // start attempt (it refuses to make a new cluster while there is none) takes it.
            guard rename(staging, c.dataDirectory) == 0 else {
                let reason = String(cString: strerror(errno))
                try? removeTree(staging)
                throw .backupFailed(message: "cannot move the restored cluster into \(c.dataDirectory): \(reason)")
            }
            let deadline = ContinuousClock.now + .seconds(120)
            while board.handle == nil, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(200)) }
            if board.handle == nil {
                throw .backupFailed(message: "the restored cluster is in \(c.dataDirectory) but PostgreSQL is not up yet; see `ampctl status` and `ampctl logs`")
            }
            logger.notice("restored the missing cluster to \(target) from backup \(recovered.backup)")
            return MetadbRestored(backup: recovered.backup, reachedTime: recovered.reachedTime.map(isoTime), reachedLSN: recovered.reachedLSN.map { "\($0)" },
                                  replayedBytes: Int64(clamping: recovered.replayedBytes), stoppedEarly: recovered.stoppedEarly)
        }
        sessions.closeAll()
        sizeCache.invalidate()
        let dataDirectory = c.dataDirectory
        let job = MaintenanceJob(description: label) {
            let kept = parentDirectory(dataDirectory) + "/.before-restore-\(getpid())"
            try? removeTree(kept)
            // A data directory deleted under the running server: nothing to keep.
            let present = access(dataDirectory, F_OK) == 0
            guard !present || rename(dataDirectory, kept) == 0 else {
                return MaintenanceStep(failure: .backupFailed(message: "cannot move the cluster aside: \(String(cString: strerror(errno))); the cluster is as it was"))
            }
            guard rename(staging, dataDirectory) == 0 else {
                let reason = String(cString: strerror(errno))
                if present { _ = InterruptedOperations.putBack(kept, into: dataDirectory) }
                return MaintenanceStep(failure: .backupFailed(message: "cannot move the restored cluster into place: \(reason); the cluster is as it was"))
            }
            return MaintenanceStep(failure: nil) { started in
                if started {
                    if present { InterruptedOperations.discardTree(kept) }
                    return nil
                }
                guard present else { return .backupFailed(message: "the restored cluster did not start (why: the ampd log, `ampctl logs`); it is in \(dataDirectory)") }
                if let problem = InterruptedOperations.putBack(kept, into: dataDirectory) {
                    return .backupFailed(message: "the restored cluster did not start, and the previous one is not back: \(problem)")
                }
                return .backupFailed(message: "the restored cluster did not start; the previous one is back and running (why: the ampd log, `ampctl logs`)")
            }
        }
        if case .failure(let e) = await c.queue.perform(job) {
            try? removeTree(staging)
            throw e
        }
        logger.notice("restored the cluster to \(target): backup \(recovered.backup), last transaction \(recovered.reachedTime.map(isoTime) ?? "none"), \(recovered.replayedBytes >> 20) MB of WAL replayed")
        if let early = recovered.stoppedEarly { logger.warning("\(early)") }
        return MetadbRestored(backup: recovered.backup, reachedTime: recovered.reachedTime.map(isoTime), reachedLSN: recovered.reachedLSN.map { "\($0)" },
                              replayedBytes: Int64(clamping: recovered.replayedBytes), stoppedEarly: recovered.stoppedEarly)
    }

    /// Restores the newest backup and all WAL after it into a scratch directory, checks it
    /// (pg_verifybackup on the backup; after the replay pg_amcheck and a query), and removes it.
    ///
    /// Commands: `pg_verifybackup -q -i amp-backup BACKUP`; `pg_amcheck --all --install-missing -h SOCKETDIR -p PORT -U USER`
    /// (<https://www.postgresql.org/docs/15/app-pgamcheck.html>).
    func verifyBackup() async throws(MetadbError) -> Metadb.VerifyBackup.Reply {
        let c = try backupContext()
        _ = await c.coordinator.repositoryInfo(maxAge: 0)
        guard let newest = await c.coordinator.backups().last else { throw .notRestorable(message: "the archive has no base backup yet; take one with `ampctl backup create`") }
        var checks: [String] = []
        if let engine = c.coordinator.pgBackRest {
            do throws(BackupError) { try await engine.verify(timeout: c.timeout) } catch { throw Self.mapped(error) }
            checks.append("pgbackrest verify: every file of every backup and the WAL in the repository match their checksums")
        } else {
            let verify = try await tool(c, "pg_verifybackup", ["-q", "-i", BaseBackup.recordName, c.archive.path(of: newest)])
            guard verify.ok else { throw .backupFailed(message: "backup \(newest.id) is damaged: pg_verifybackup: \(verify.text)") }
            checks.append("pg_verifybackup: every file of \(newest.id) matches its backup_manifest")
        }
        let scratch = parentDirectory(c.dataDirectory) + "/.verify-\(getpid())"
        defer { try? removeTree(scratch) }
        let board = self.board
        board.update { $0.operation = "verifying backup \(newest.id): replaying" }
        defer { board.update { $0.operation = nil } }
        let recovered: RecoveredCluster
        do throws(BackupError) {
            recovered = try await c.recover(to: .latest, into: scratch, archiving: false) { replayed, total in
                board.update { $0.operation = "verifying backup \(newest.id): replayed \(replayed >> 20)\(total > replayed ? " of \(total >> 20)" : "") MB of WAL" }
            }
        } catch {
            throw .backupFailed(message: "backup \(newest.id) and its WAL do not restore: \(error.message)")
        }
        checks.append("restored \(recovered.backup) and \(recovered.replayedBytes >> 20) MB of WAL, to \(recovered.reachedTime.map(isoTime) ?? "its end")")
        if let early = recovered.stoppedEarly { throw .backupFailed(message: "the archive's WAL does not replay to its end: \(early)") }
        let amcheck = c.binaries.path("pg_amcheck")
        let outcome: Result<[String], MetadbError>
        do throws(PrivateServer.Failure) {
            outcome = try await PrivateServer.with(dataDirectory: scratch, binaries: c.binaries, version: c.version, socketDirectory: nil, account: c.account) { h in
                var found: [String] = []
                let conninfo = h.conninfo
                let count = await runOnThread(name: "amp-verify") { (try? LibPQ.query(conninfo, "SELECT count(*) FROM pg_catalog.pg_class"))?.first ?? nil }
                guard let count else { return .failure(.backupFailed(message: "the restored copy of \(newest.id) does not answer a query")) }
                found.append("a query answered (\(count) relations in pg_class)")
                if access(amcheck, X_OK) == 0 {
                    let check = try? await tool(c, "pg_amcheck", ["--all", "--install-missing", "-h", h.socketDirectory, "-p", "\(h.port)", "-U", h.user])
                    if let check, !check.ok {
                        if check.text.contains("amcheck") && (check.text.contains("not available") || check.text.contains("could not open extension control file")) {
                            found.append("pg_amcheck skipped: the amcheck extension is not installed with these binaries (install postgresql-contrib)")
                        } else {
                            return .failure(.backupFailed(message: "pg_amcheck found damage in the restored copy of \(newest.id): \(check.text.split(separator: "\n").prefix(3).joined(separator: "; "))"))
                        }
                    } else if check != nil {
                        found.append("pg_amcheck: every table and B-tree index of every database is sound")
                    }
                } else {
                    found.append("pg_amcheck skipped: \(amcheck) is missing")
                }
                return .success(found)
            }
        } catch {
            throw .backupFailed(message: "the restored copy of \(newest.id) did not start: \(error)")
        }
        switch outcome {
        case .failure(let e): throw e
        case .success(let found): checks += found
        }
        if c.coordinator.pgBackRest == nil { c.archive.markVerified(newest) } else { c.archive.markRepositoryBackupVerified(newest.id) }
        logger.notice("verified backup \(newest.id): \(checks.joined(separator: "; "))")
        return .init(backup: newest.id, checks: checks)
    }

    private func tool(_ c: BackupContext, _ name: String, _ arguments: [String]) async throws(MetadbError) -> (ok: Bool, text: String) {
        do throws(BackupError) {
            let out = try await runBackupTool(c.binaries.path(name), arguments, application: "amp_verify", account: c.account, workingDirectory: "/",
                                              deadline: .now + c.timeout, limit: 64 << 10, install: "install the PostgreSQL client tools")
            return (out.succeeded, out.text)
        } catch {
            throw .backupFailed(message: error.message)
        }
    }
}
