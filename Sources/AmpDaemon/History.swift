#if canImport(Glibc)
import Glibc
#endif
import AmpMetrics
import AmpPostgres
import AmpProtocol
import Logging
import ServiceLifecycle
import Synchronization
import SystemSupport
import ThreadSupport

extension MetadbHistorySample: TimedSample {}

/// The project's history in memory (``HistoryRing``: every 5 s for an hour, a minute apart for
/// the day before; at most 2160 samples of 15 numbers): one catalog query per sample on a kept
/// session of the ``LibPQSessions`` registry, the databases' size once a minute (it walks
/// their files). `GetHistory` reads it; `ampctl status --history` draws it.
final class HistorySampler: Sendable {
    static let interval = Duration.seconds(5)
    let board: StatusBoard
    let session: LibPQSessionSlot
    private let ring = Mutex(HistoryRing<MetadbHistorySample>())
    private let lastSize = Mutex<(bytes: Double, at: Double)>((0, 0))

    init(board: StatusBoard, session: LibPQSessionSlot) {
        self.board = board
        self.session = session
    }

    /// One row of cumulative counters, for a server of major version `major`: checkpoints are in
    /// `pg_stat_bgwriter` up to 16 and in `pg_stat_checkpointer` from 17.
    ///
    /// See <https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-DATABASE-VIEW>,
    /// <https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-BGWRITER-VIEW> and
    /// <https://www.postgresql.org/docs/17/monitoring-stats.html#MONITORING-PG-STAT-CHECKPOINTER-VIEW>.
    static func query(major: Int) -> String {
        let checkpoints = major >= 17
            ? "(SELECT (num_timed + num_requested)::float8 FROM pg_catalog.pg_stat_checkpointer)"
            : "(SELECT (checkpoints_timed + checkpoints_req)::float8 FROM pg_catalog.pg_stat_bgwriter)"
        return """
            SELECT coalesce(sum(xact_commit), 0)::float8, coalesce(sum(xact_rollback), 0)::float8,
                   coalesce(sum(tup_returned + tup_fetched), 0)::float8, coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0)::float8,
                   coalesce(sum(blks_hit), 0)::float8, coalesce(sum(blks_read), 0)::float8,
                   pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                                                   ELSE pg_catalog.pg_current_wal_lsn() END, '0/0')::float8,
                   (SELECT count(*) FILTER (WHERE state = 'active') FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::int,
                   (SELECT count(*) FILTER (WHERE state = 'idle') FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::int,
                   (SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%') FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::int,
                   \(checkpoints)
            FROM pg_catalog.pg_stat_database
            """
    }
    static let sizeQuery = "SELECT coalesce(sum(pg_catalog.pg_database_size(oid)), 0)::float8 FROM pg_catalog.pg_database WHERE datallowconn"

    /// Takes one sample now (a state-only one while PostgreSQL is not ready).
    func sample(now: Double = epochNow()) async {
        let status = board.status
        var s = MetadbHistorySample(time: now, restarts: status.restarts, state: status.state.rawValue)
        if let handle = board.handle {
            let conninfo = handle.conninfo, query = Self.query(major: handle.serverMajor)
            let session = self.session
            let needSize = now - lastSize.withLock { $0.at } >= 60
            let (row, size): ([String?]?, Double?) = await runOnThread(name: "amp-history") {
                let row = (try? session.rows(conninfo, query))?.first
                let size = needSize ? (try? session.rows(conninfo, Self.sizeQuery))?.first?.first.flatMap { $0.flatMap { Double($0) } } : nil
                return (row, size)
            }
            if let row, row.count == 11 {
                func d(_ i: Int) -> Double { row[i].flatMap { Double($0) } ?? 0 }
                func n(_ i: Int) -> Int { row[i].flatMap { Int($0) } ?? 0 }
                s.committed = d(0); s.rolledBack = d(1); s.rowsRead = d(2); s.rowsWritten = d(3)
                s.blocksHit = d(4); s.blocksRead = d(5); s.walBytes = d(6)
                s.activeConnections = n(7); s.idleConnections = n(8); s.idleInTransactionConnections = n(9)
                s.checkpoints = d(10)
            }
            if let size { lastSize.withLock { $0 = (size, now) } }
            s.databaseBytes = lastSize.withLock { $0.bytes }
        }
        ring.withLock { $0.append(s) }
    }

    func samples(since: Double?) -> [MetadbHistorySample] { ring.withLock { $0.samples(since: since) } }
}

/// The sampler as a service of the group: a sample every 5 s until shutdown.
struct HistoryService: Service {
    let sampler: HistorySampler

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await sampler.sample()
                if (try? await Task.sleep(for: HistorySampler.interval)) == nil { return }
            }
        }
    }
}
