#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import ServiceLifecycle
import Synchronization
import Varlink
import SystemSupport
import ThreadSupport

extension MetadbOperations {
    // MARK: - snapshots

    func context() throws(MetadbError) -> SnapshotContext {
        guard let snapshots else { throw .snapshotFailed(message: "snapshots and resets are \(unavailableHere)") }
        return snapshots
    }

    /// Why a local-cluster feature is missing, in words.
    var unavailableHere: String {
        external == nil ? "not available in this ampd"
            : "not available for an external server: they need the local cluster (remove [postgres] url from .amp/config.toml to use it again)"
    }

    static func wire(_ s: ClusterSnapshots.Snapshot) -> MetadbSnapshot {
        MetadbSnapshot(name: s.name, created: s.created, postgresVersion: s.postgresVersion, sizeBytes: Int64(clamping: s.sizeBytes), gitCommit: s.gitCommit)
    }

    static func mapped(_ failure: ClusterSnapshots.Failure) -> MetadbError {
        switch failure {
        case .exists(let name): return .snapshotExists(name: name)
        case .missing(let name): return .noSuchSnapshot(name: name)
        case .incompatible(let name, let snapshot, let cluster): return .snapshotIncompatible(name: name, snapshotVersion: snapshot, clusterVersion: cluster)
        case .io(let message): return .snapshotFailed(message: message)
        }
    }

    func createSnapshot(_ requested: String?) async throws(MetadbError) -> MetadbSnapshot {
        let c = try context()
        let name = requested ?? ClusterSnapshots.defaultName()
        if let reason = Metadb.snapshotNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        // Anything under that name (a finished snapshot, or one whose manifest is unreadable)
        // is refused before PostgreSQL is stopped for the copy.
        if c.store.exists(name) { throw .snapshotExists(name: name) }
        _ = try readyHandle()
        let commit = await c.gitCommit()
        let made = Mutex<ClusterSnapshots.Snapshot?>(nil)
        let job = MaintenanceJob(description: "taking snapshot \(name)") {
            do throws(ClusterSnapshots.Failure) {
                let snapshot = try c.store.create(name, from: c.dataDirectory, gitCommit: commit)
                made.withLock { $0 = snapshot }
                return MaintenanceStep(failure: nil)
            } catch {
                return MaintenanceStep(failure: Self.mapped(error))
            }
        }
        if case .failure(let e) = await c.queue.perform(job) { throw e }
        guard let snapshot = made.withLock({ $0 }) else { throw .snapshotFailed(message: "the snapshot was not recorded; see `ampctl snapshot list` and the ampd log") }
        logger.info("took snapshot \(name) (\(snapshot.sizeBytes >> 20) MB)")
        return Self.wire(snapshot)
    }

    func restoreSnapshot(_ name: String) async throws(MetadbError) {
        let c = try context()
        guard let snapshot = c.store.list().first(where: { $0.name == name }) else { throw .noSuchSnapshot(name: name) }
        let current = FileContents.text(c.dataDirectory + "/PG_VERSION")?.trimmingWhitespace ?? ""
        guard current == snapshot.postgresVersion else {
            throw .snapshotIncompatible(name: name, snapshotVersion: snapshot.postgresVersion, clusterVersion: current)
        }
        _ = try readyHandle()
        await automaticRestorePoint("before-snapshot-restore")
        sessions.closeAll()
        sizeCache.invalidate()
        let job = MaintenanceJob(description: "restoring snapshot \(name)") {
            do throws(ClusterSnapshots.Failure) {
                let kept = try c.store.restore(name, into: c.dataDirectory)
                return MaintenanceStep(failure: nil) { started in
                    if started {
                        c.store.finishRestore(kept)
                        return nil
                    }
                    do throws(ClusterSnapshots.Failure) {
                        try c.store.undoRestore(kept, into: c.dataDirectory)
                        return .snapshotFailed(message: "the restored cluster did not start; the previous one is back and running (why: the ampd log, `ampctl logs`)")
                    } catch {
                        return Self.mapped(error)
                    }
                }
            } catch {
                return MaintenanceStep(failure: Self.mapped(error))
            }
        }
        if case .failure(let e) = await c.queue.perform(job) { throw e }
        logger.info("restored snapshot \(name)")
    }

    func resetCluster(seed: Bool) async throws(MetadbError) {
        let c = try context()
        if seed && !c.seedsConfigured {
            throw .snapshotFailed(message: "no seed scripts are configured ([postgres] seed in .amp/config.toml), so --seed has nothing to run; nothing was changed: add them, or reset without --seed")
        }
        _ = try readyHandle()
        await automaticRestorePoint("before-reset")
        sessions.closeAll()
        sizeCache.invalidate()
        let job = MaintenanceJob(description: seed ? "resetting the cluster (with the seed scripts)" : "resetting the cluster") {
            let kept = parentDirectory(c.dataDirectory) + "/.before-reset-\(getpid())"
            try? removeTree(kept)
            guard rename(c.dataDirectory, kept) == 0 else {
                return MaintenanceStep(failure: .snapshotFailed(message: "cannot move the cluster aside: \(String(cString: strerror(errno))); the cluster is as it was"))
            }
            var step = MaintenanceStep(failure: nil) { ok in
                if ok {
                    InterruptedOperations.discardTree(kept)
                    return nil
                }
                if let problem = InterruptedOperations.putBack(kept, into: c.dataDirectory) {
                    return .snapshotFailed(message: "the new cluster failed, and the previous one is not back: \(problem)")
                }
                return nil
            }
            step.reseed = seed
            step.recreated = true
            return step
        }
        if case .failure(let e) = await c.queue.perform(job) { throw e }
        logger.info("reset the cluster\(seed ? " with the seed scripts" : "")")
    }

    func deleteSnapshot(_ name: String) throws(MetadbError) {
        let c = try context()
        if let reason = Metadb.snapshotNameProblem(name) { throw .invalidDatabaseName(name: name, reason: reason) }
        do throws(ClusterSnapshots.Failure) { try c.store.delete(name) } catch { throw Self.mapped(error) }
        logger.info("deleted snapshot \(name)")
    }

}

/// What snapshots need: the store (`.amp/snapshots`), the data directory, the project's base
/// (for its git commit) and the queue to the service.
struct SnapshotContext: Sendable {
    var store: ClusterSnapshots
    var dataDirectory: String
    var projectBase: String
    var queue: MaintenanceQueue
    /// Whether `[postgres] seed` names scripts (a reset with seeds needs them).
    var seedsConfigured = false

    /// HEAD of the project when it is a git work tree.
    func gitCommit() async -> String? {
        guard access("/usr/bin/git", X_OK) == 0,
              let output = try? await runCommand("/usr/bin/git", ["-C", projectBase, "rev-parse", "HEAD"], environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"], timeout: .seconds(10)),
              output.succeeded
        else { return nil }
        let commit = output.text.trimmingWhitespace
        return commit.count == 40 || commit.count == 64 ? commit : nil
    }
}

