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

/// Serves `io.amp.Metadb`: decodes each call into the typed ``MetadbCall``, hands it to one
/// function of ``MetadbOperations`` with typed parameters, and encodes the reply or maps the
/// ``MetadbError``. Nothing else happens here.
struct MetadbHandler: VarlinkHandler {
    let operations: MetadbOperations

    func handle(_ call: VarlinkCall, stream: VarlinkReplyStream) async throws(VarlinkError) -> JSONObject {
        switch try MetadbCall(call) {
        case .getStatus:
            return try Metadb.GetStatus.encode(.init(status: await operations.statusWithStatistics()))
        case .watchStatus:
            for await status in operations.board.watch() {
                if Task.isCancelled { break }
                stream.send(try Metadb.WatchStatus.encode(.init(status: status)))
            }
            return try Metadb.WatchStatus.encode(.init(status: operations.board.status))
        case .getConnection:
            return try Metadb.GetConnection.encode(try await mapped { () async throws(MetadbError) in try operations.connection() })
        case .listDatabases:
            return try Metadb.ListDatabases.encode(.init(databases: try await mapped { () async throws(MetadbError) in try await operations.databases() }))
        case .createDatabase(let p):
            return try Metadb.CreateDatabase.encode(.init(database: try await mapped { () async throws(MetadbError) in
                try await operations.createDatabase(p.name, template: p.template, force: p.force ?? false)
            }))
        case .dropDatabase(let p):
            try await mapped { () async throws(MetadbError) in try await operations.dropDatabase(p.name, force: p.force ?? false) }
            return try Metadb.DropDatabase.encode(NoParameters())
        case .createSnapshot(let p):
            return try Metadb.CreateSnapshot.encode(.init(snapshot: try await mapped { () async throws(MetadbError) in try await operations.createSnapshot(p.name) }))
        case .listSnapshots:
            return try Metadb.ListSnapshots.encode(.init(snapshots: try await mapped { () async throws(MetadbError) in try operations.context().store.list().map(MetadbOperations.wire) }))
        case .restoreSnapshot(let p):
            try await mapped { () async throws(MetadbError) in try await operations.restoreSnapshot(p.name) }
            return try Metadb.RestoreSnapshot.encode(NoParameters())
        case .getTopStatements(let p):
            return try Metadb.GetTopStatements.encode(.init(statements: try await mapped { () async throws(MetadbError) in
                try await operations.topStatements(database: p.database, limit: p.limit ?? 20)
            }))
        case .resetStatementStatistics:
            try await mapped { () async throws(MetadbError) in try await operations.resetStatementStatistics() }
            return try Metadb.ResetStatementStatistics.encode(NoParameters())
        case .resetCluster(let p):
            try await mapped { () async throws(MetadbError) in try await operations.resetCluster(seed: p.seed ?? false) }
            return try Metadb.ResetCluster.encode(NoParameters())
        case .acquireTestDatabase(let p):
            let reply = try await mapped { () async throws(MetadbError) in try await operations.acquireTestDatabase(p.template) }
            stream.send(try Metadb.AcquireTestDatabase.encode(reply))
            // The database lives as long as this call: until the caller's connection closes.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            if let pool = operations.testDatabases, let handle = operations.board.handle { _ = await pool.release(reply.database, handle: handle) }
            return try Metadb.AcquireTestDatabase.encode(reply)
        case .releaseTestDatabase(let p):
            try await mapped { () async throws(MetadbError) in
                let handle = try operations.readyHandle()
                guard let pool = operations.testDatabases, await pool.release(p.name, handle: handle) else { throw .noSuchDatabase(name: p.name) }
            }
            return try Metadb.ReleaseTestDatabase.encode(NoParameters())
        case .listBackups:
            return try Metadb.ListBackups.encode(try await mapped { () async throws(MetadbError) in try await operations.listBackups() })
        case .createBackup:
            return try Metadb.CreateBackup.encode(.init(backup: try await mapped { () async throws(MetadbError) in try await operations.createBackup() }))
        case .verifyBackup:
            return try Metadb.VerifyBackup.encode(try await mapped { () async throws(MetadbError) in try await operations.verifyBackup() })
        case .promote:
            return try Metadb.Promote.encode(.init(status: try await mapped { () async throws(MetadbError) in try await operations.promote() }))
        case .createRestorePoint(let p):
            return try Metadb.CreateRestorePoint.encode(try await mapped { () async throws(MetadbError) in try await operations.createRestorePoint(p.name) })
        case .restoreToTime(let p):
            return try Metadb.RestoreToTime.encode(.init(restored: try await mapped { () async throws(MetadbError) in try await operations.restoreToTime(p.target) }))
        case .getHistory(let p):
            return try Metadb.GetHistory.encode(.init(samples: operations.history?.samples(since: p.since) ?? [],
                                                      intervalSeconds: Double(HistorySampler.interval.components.seconds)))
        case .getMetrics:
            return try Metadb.GetMetrics.encode(.init(text: await operations.metrics?.render() ?? ""))
        case .deleteSnapshot(let p):
            try await mapped { () async throws(MetadbError) in try operations.deleteSnapshot(p.name) }
            return try Metadb.DeleteSnapshot.encode(NoParameters())
        }
    }

    /// Runs a method body; its ``MetadbError`` goes on the wire as the interface's error.
    private func mapped<T>(_ body: () async throws(MetadbError) -> T) async throws(VarlinkError) -> T {
        do {
            return try await body()
        } catch {
            throw error.varlinkError
        }
    }

}

/// The varlink server as a service of the `ServiceGroup`: started first, stopped last (after
/// PostgreSQL), so `ampctl status` can watch the whole start and stop.
struct VarlinkService: Service {
    let server: VarlinkServer
    let board: StatusBoard

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await server.run()
        }
        board.finish()
        // RUNTIME/amp/NAME and RUNTIME/amp when empty (systemd removes its RuntimeDirectory
        // itself), and RUNTIME itself when it is ampd's /tmp/amp-UID fallback: rmdir fails
        // harmlessly while anything is left in them.
        let socketDirectory = parentDirectory(server.path), ampDirectory = parentDirectory(socketDirectory), runtime = parentDirectory(ampDirectory)
        rmdir(socketDirectory)
        if ampDirectory.hasSuffix("/amp") { rmdir(ampDirectory) }
        if runtime == "/tmp/amp-\(geteuid())" { rmdir(runtime) }
    }
}
