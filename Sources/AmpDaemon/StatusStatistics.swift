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
    /// How long GetStatus waits for the statistics: a hung server must not hang the status.
    static let statisticsTimeout: Duration = .seconds(1)

    /// The board's status plus size and connection count, when the server answers within
    /// ``statisticsTimeout`` (the query goes on on the ``statistics`` thread until libpq's connect_timeout).
    /// The connection count is read on every call; the size (`pg_database_size`, a walk over
    /// every file of every database: 2–5 ms) at most every ``DatabaseSizeCache/maxAge``.
    func statusWithStatistics() async -> MetadbStatus {
        var status = board.status
        guard let handle = board.handle else { return status }
        let race = Race<[[String?]]?>()
        let conninfo = handle.conninfo, session = readOnlySession
        let cachedSize = sizeCache.fresh(pid: Int(handle.pid))
        // On an external server, only the databases the role may connect to (the others fail).
        let query = ClusterQueries.statistics(cachedSize: cachedSize, onlyConnectable: external != nil)
        // Busy: the last query still hangs; the status goes out without statistics.
        guard let worker = self.statistics, worker.submit({
            race.resolve(try? session.rows(conninfo, query))
        }) else { return status }
        let statistics = await race.wait(orAfter: Self.statisticsTimeout, nil)
        if let rows = statistics, let row = rows.first {
            status.databaseSizeBytes = row[0].flatMap { Int64($0) }
            status.connections = row.count > 1 ? row[1].flatMap { Int($0) } : nil
            if cachedSize == nil, let size = status.databaseSizeBytes { sizeCache.store(size, pid: Int(handle.pid)) }
            if external == nil, row.count == 7, let r = Replication.Figures(columns: Array(row[2...])) {
                status.role = r.standby ? "standby" : "primary"
                if r.standby || !r.standbys.isEmpty {
                    status.replication = MetadbReplication(
                        receiver: r.receiver, upstream: r.upstream, slot: r.slot, lagBytes: r.lagBytes, lagSeconds: r.lagSeconds,
                        standbys: r.standbys.map { MetadbStandby(name: $0.name, state: $0.state, lagBytes: $0.lagBytes, lagSeconds: $0.lagSeconds) })
                }
            }
        }
        return status
    }}

/// The cluster's size as last measured, for ``DatabaseSizeCache/maxAge``: a status polled
/// by an editor or a `watch` loop does not walk the data directory each time. Kept per
/// postmaster PID, so a restarted server is measured afresh.
final class DatabaseSizeCache: Sendable {
    static let maxAge: Duration = .seconds(2)
    private let value = Mutex<(at: ContinuousClock.Instant, pid: Int, bytes: Int64)?>(nil)

    func fresh(pid: Int) -> Int64? {
        value.withLock { v in
            guard let v, v.pid == pid, ContinuousClock.now - v.at < Self.maxAge else { return nil }
            return v.bytes
        }
    }

    func store(_ bytes: Int64, pid: Int) { value.withLock { $0 = (ContinuousClock.now, pid, bytes) } }

    /// Forgets the size (a database was created or dropped).
    func invalidate() { value.withLock { $0 = nil } }
}

