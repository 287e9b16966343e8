#if canImport(Glibc)
import Glibc
#endif
import Varlink

/// Why a call to ampd failed.
public enum MetadbClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing listens at the socket: ampd is not running.
    case notRunning(path: String)
    /// The socket exists but belongs to someone else.
    case accessDenied(path: String)
    /// ampd answered with one of the interface's errors.
    case service(MetadbError)
    /// ampd answered with another varlink error (e.g. `org.varlink.service.PermissionDenied`).
    case varlink(VarlinkError)
    /// The connection failed, timed out, or the reply broke the protocol or the types.
    case transport(String)
    case protocolViolation(String)
    /// The socket or its directory is not this user's: another user may be impersonating ampd.
    case untrusted(String)

    public var description: String {
        switch self {
        case .notRunning(let path): return "nothing listens at \(path)"
        case .accessDenied(let path): return "\(path): permission denied"
        case .service(let e): return e.description
        case .varlink(let e): return e.description
        case .transport(let m), .protocolViolation(let m), .untrusted(let m): return m
        }
    }
}

/// The typed client of `io.amp.Metadb`: the only way `ampctl` talks to ampd (model:
/// apple/container's `ContainerClient`). One connection; calls are made one at a time.
public struct MetadbClient: Sendable {
    /// The socket it is connected to.
    public let path: String
    private let connection: VarlinkClient

    /// Connects to ampd's socket. The server must run as this user or as root (checked with
    /// `SO_PEERCRED` before anything is sent or believed).
    public init(path: String) throws(MetadbClientError) {
        self.path = path
        do {
            connection = try VarlinkClient.connect(path: path, trustedUIDs: [geteuid(), 0])
        } catch {
            switch error.code {
            case .notRunning: throw .notRunning(path: path)
            case .accessDenied: throw .accessDenied(path: path)
            case .untrustedPeer: throw .untrusted(error.message)
            default: throw .transport("\(error)")
            }
        }
    }

    /// Calls one method.
    public func call<M: MetadbMethod>(_ method: M.Type, _ parameters: M.Parameters, timeout: Duration = .seconds(30)) async throws(MetadbClientError) -> M.Reply {
        do {
            return try await connection.call(method, parameters, timeout: timeout)
        } catch {
            throw Self.map(error, path: path)
        }
    }

    /// The current status.
    public func status(timeout: Duration = .seconds(10)) async throws(MetadbClientError) -> MetadbStatus {
        try await call(Metadb.GetStatus.self, NoParameters(), timeout: timeout).status
    }

    /// How to connect.
    public func connectionInfo() async throws(MetadbClientError) -> Metadb.GetConnection.Reply {
        try await call(Metadb.GetConnection.self, NoParameters())
    }

    public func databases() async throws(MetadbClientError) -> [MetadbDatabase] {
        try await call(Metadb.ListDatabases.self, NoParameters()).databases
    }

    /// Creates `name`, empty or (with `template`) as a clone of that database.
    public func createDatabase(_ name: String, from template: String? = nil, force: Bool = false) async throws(MetadbClientError) -> MetadbDatabase {
        try await call(Metadb.CreateDatabase.self, .init(name: name, template: template, force: force ? true : nil)).database
    }

    /// Takes a snapshot of the cluster (PostgreSQL stops for the copy and starts again).
    public func createSnapshot(_ name: String?) async throws(MetadbClientError) -> MetadbSnapshot {
        try await call(Metadb.CreateSnapshot.self, .init(name: name), timeout: .seconds(3600)).snapshot
    }

    public func snapshots() async throws(MetadbClientError) -> [MetadbSnapshot] {
        try await call(Metadb.ListSnapshots.self, NoParameters()).snapshots
    }

    /// Replaces the cluster with snapshot `name`.
    public func restoreSnapshot(_ name: String) async throws(MetadbClientError) {
        _ = try await call(Metadb.RestoreSnapshot.self, .init(name: name), timeout: .seconds(3600))
    }

    /// The statements taking the most total time (pg_stat_statements).
    public func topStatements(database: String?, limit: Int) async throws(MetadbClientError) -> [MetadbStatement] {
        try await call(Metadb.GetTopStatements.self, .init(database: database, limit: limit)).statements
    }

    public func resetStatementStatistics() async throws(MetadbClientError) {
        _ = try await call(Metadb.ResetStatementStatistics.self, NoParameters())
    }

    /// Replaces the cluster with a new one (with the seed scripts when `seed`).
    public func resetCluster(seed: Bool) async throws(MetadbClientError) {
        _ = try await call(Metadb.ResetCluster.self, .init(seed: seed ? true : nil), timeout: .seconds(3600))
    }

    /// Drops a test database now (ampd answers once it is gone).
    public func releaseTestDatabase(_ name: String) async throws(MetadbClientError) {
        _ = try await call(Metadb.ReleaseTestDatabase.self, .init(name: name), timeout: .seconds(120))
    }

    public func backups() async throws(MetadbClientError) -> Metadb.ListBackups.Reply {
        try await call(Metadb.ListBackups.self, NoParameters())
    }

    public func createBackup() async throws(MetadbClientError) -> MetadbBackup {
        try await call(Metadb.CreateBackup.self, NoParameters(), timeout: .seconds(6 * 3600)).backup
    }

    public func verifyBackup() async throws(MetadbClientError) -> Metadb.VerifyBackup.Reply {
        try await call(Metadb.VerifyBackup.self, NoParameters(), timeout: .seconds(6 * 3600))
    }

    /// Promotes the standby to a primary; the status after.
    public func promote() async throws(MetadbClientError) -> MetadbStatus {
        try await call(Metadb.Promote.self, NoParameters()).status
    }

    public func createRestorePoint(_ name: String) async throws(MetadbClientError) -> Metadb.CreateRestorePoint.Reply {
        try await call(Metadb.CreateRestorePoint.self, .init(name: name))
    }

    /// The project's metrics in the Prometheus text format.
    public func metrics() async throws(MetadbClientError) -> String {
        try await call(Metadb.GetMetrics.self, NoParameters()).text
    }

    /// The history ampd keeps, oldest first, from `since` (seconds since the epoch) on.
    public func history(since: Double?) async throws(MetadbClientError) -> Metadb.GetHistory.Reply {
        try await call(Metadb.GetHistory.self, .init(since: since))
    }

    public func restore(to target: String) async throws(MetadbClientError) -> MetadbRestored {
        try await call(Metadb.RestoreToTime.self, .init(target: target), timeout: .seconds(24 * 3600)).restored
    }

    public func deleteSnapshot(_ name: String) async throws(MetadbClientError) {
        _ = try await call(Metadb.DeleteSnapshot.self, .init(name: name), timeout: .seconds(600))
    }

    public func dropDatabase(_ name: String, force: Bool) async throws(MetadbClientError) {
        _ = try await call(Metadb.DropDatabase.self, .init(name: name, force: force))
    }

    /// The status, then every change, until the service stops or the consumer stops reading.
    public func watchStatus() -> AsyncThrowingMapSequence<AsyncThrowingMapSequence<AsyncThrowingStream<JSONObject, any Error>, Metadb.GetStatus.Reply>, MetadbStatus> {
        connection.stream(Metadb.WatchStatus.self, NoParameters()).map(\.status)
    }

    /// Acquires a throwaway test database (`AcquireTestDatabase` with `more`). It lives until
    /// ``TestDatabaseLease/end()``, until the lease is dropped, or until this process exits —
    /// whichever closes the call first; ampd then drops it.
    public func acquireTestDatabase(template: String?) async throws(MetadbClientError) -> TestDatabaseLease {
        var iterator = connection.stream(Metadb.AcquireTestDatabase.self, .init(template: template)).makeAsyncIterator()
        do {
            guard let reply = try await iterator.next() else { throw MetadbClientError.protocolViolation("AcquireTestDatabase ended without a reply") }
            return TestDatabaseLease(reply: reply, iterator: iterator)
        } catch let error as MetadbClientError {
            throw error
        } catch {
            throw Self.map(error, path: path)
        }
    }

    /// One mapping from what the transport throws to ``MetadbClientError``.
    static func map(_ error: any Error, path: String) -> MetadbClientError {
        switch error {
        case let e as VarlinkError: return MetadbError(e).map(MetadbClientError.service) ?? .varlink(e)
        case let e as VarlinkClientError:
            switch e.code {
            case .protocolViolation: return .protocolViolation("\(e)")
            case .notRunning: return .notRunning(path: path)
            case .accessDenied: return .accessDenied(path: path)
            case .untrustedPeer: return .untrusted(e.message)
            default: return .transport("\(e)")
            }
        case let e as JSONCodingError: return .protocolViolation("a reply that does not match io.amp.Metadb: \(e)")
        default: return .transport("\(error)")
        }
    }
}

/// A test database held open by its `AcquireTestDatabase` call.
public final class TestDatabaseLease: @unchecked Sendable {
    public let reply: Metadb.AcquireTestDatabase.Reply
    /// Keeps the call (and so the database) alive; dropping it closes the connection.
    private var iterator: AsyncThrowingMapSequence<AsyncThrowingStream<JSONObject, any Error>, Metadb.AcquireTestDatabase.Reply>.Iterator?

    init(reply: Metadb.AcquireTestDatabase.Reply,
         iterator: AsyncThrowingMapSequence<AsyncThrowingStream<JSONObject, any Error>, Metadb.AcquireTestDatabase.Reply>.Iterator) {
        self.reply = reply
        self.iterator = iterator
    }

    /// Ends the call; ampd drops the database.
    public func end() { iterator = nil }
}
