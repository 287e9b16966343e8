/// The PostgreSQL metrics amp serves: the queries, and their rows turned into families with
/// postgres_exporter's names and labels (so its dashboards work), pure. Queries that fail
/// (a standby, an old version) leave their families out.
public enum PostgresMetrics {
    /// One query and the families made from its rows.
    public struct Query: Sendable {
        public let sql: String
        public let families: @Sendable ([[String?]]) -> [MetricFamily]
    }

    static func number(_ s: String?) -> Double? { s.flatMap { Double($0) } }

    /// Counters and gauges of `pg_stat_database` (per database: `datid`, `datname`), with
    /// postgres_exporter's names.
    static let databaseColumns: [(column: String, kind: MetricFamily.Kind, help: String)] = [
        ("numbackends", .gauge, "Number of backends currently connected to this database"),
        ("xact_commit", .counter, "Number of transactions in this database that have been committed"),
        ("xact_rollback", .counter, "Number of transactions in this database that have been rolled back"),
        ("blks_read", .counter, "Number of disk blocks read in this database"),
        ("blks_hit", .counter, "Number of times disk blocks were found already in the buffer cache"),
        ("tup_returned", .counter, "Number of rows returned by queries in this database"),
        ("tup_fetched", .counter, "Number of rows fetched by queries in this database"),
        ("tup_inserted", .counter, "Number of rows inserted by queries in this database"),
        ("tup_updated", .counter, "Number of rows updated by queries in this database"),
        ("tup_deleted", .counter, "Number of rows deleted by queries in this database"),
        ("conflicts", .counter, "Number of queries canceled due to conflicts with recovery in this database"),
        ("temp_bytes", .counter, "Total amount of data written to temporary files by queries in this database"),
        ("deadlocks", .counter, "Number of deadlocks detected in this database"),
    ]

    /// See <https://www.postgresql.org/docs/15/monitoring-stats.html>.
    public static let queries: [Query] = [
        Query(sql: "SELECT datid::text, datname, pg_catalog.pg_database_size(datid)::bigint, "
                + databaseColumns.map { "\($0.column)::bigint" }.joined(separator: ", ")
                + " FROM pg_catalog.pg_stat_database WHERE datname IS NOT NULL ORDER BY datname") { rows in
            var size = MetricFamily("pg_database_size_bytes", .gauge, "Disk space used by the database", [])
            var stats = databaseColumns.map { MetricFamily("pg_stat_database_" + $0.column, $0.kind, $0.help, []) }
            for row in rows where row.count == 3 + databaseColumns.count {
                guard let datid = row[0], let datname = row[1] else { continue }
                if let v = number(row[2]) { size.samples.append(.init([.init("datname", datname)], v)) }
                for i in databaseColumns.indices {
                    if let v = number(row[3 + i]) { stats[i].samples.append(.init([.init("datid", datid), .init("datname", datname)], v)) }
                }
            }
            return [size] + stats
        },
        Query(sql: "SELECT datname, coalesce(state, 'unknown'), count(*)::bigint FROM pg_catalog.pg_stat_activity "
                + "WHERE datname IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2") { rows in
            [MetricFamily("pg_stat_activity_count", .gauge, "Number of connections in this state", rows.compactMap { r in
                guard r.count == 3, let db = r[0], let state = r[1], let v = number(r[2]) else { return nil }
                return .init([.init("datname", db), .init("state", state)], v)
            })]
        },
        Query(sql: "SELECT d.datname, l.mode, count(*)::bigint FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_database d ON d.oid = l.database "
                + "GROUP BY 1, 2 ORDER BY 1, 2") { rows in
            [MetricFamily("pg_locks_count", .gauge, "Number of locks", rows.compactMap { r in
                guard r.count == 3, let db = r[0], let mode = r[1], let v = number(r[2]) else { return nil }
                return .init([.init("datname", db), .init("mode", mode.lowercased())], v)
            })]
        },
        Query(sql: "SELECT pg_catalog.pg_is_in_recovery()::int, "
                + "pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END, '0/0')::bigint, "
                + "CASE WHEN pg_catalog.pg_is_in_recovery() THEN greatest(0, extract(epoch FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()))::float8 END, "
                + "(SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'max_connections')") { rows in
            guard let r = rows.first, r.count == 4 else { return [] }
            var out = [MetricFamily("pg_replication_is_replica", .gauge, "Whether the server is a standby (1) or a primary (0)", number(r[0]).map { [.init([], $0)] } ?? []),
                       MetricFamily("amp_wal_bytes_total", .counter, "WAL written (a primary) or replayed (a standby), in bytes since 0/0", number(r[1]).map { [.init([], $0)] } ?? []),
                       MetricFamily("pg_settings_max_connections", .gauge, "Server parameter max_connections", number(r[3]).map { [.init([], $0)] } ?? [])]
            if let lag = number(r[2]) { out.append(MetricFamily("pg_replication_lag_seconds", .gauge, "Replication lag behind the primary, in seconds", [.init([], lag)])) }
            return out
        },
        Query(sql: "SELECT application_name, coalesce(client_addr::text, 'local'), state, "
                + "pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::bigint, extract(epoch FROM replay_lag)::float8 "
                + "FROM pg_catalog.pg_stat_replication ORDER BY 1") { rows in
            var diff = MetricFamily("pg_stat_replication_pg_wal_lsn_diff", .gauge, "Bytes of WAL a standby (or archiver) has not replayed yet", [])
            var lag = MetricFamily("pg_stat_replication_replay_lag_seconds", .gauge, "Time a standby (or archiver) is behind, as PostgreSQL measures it", [])
            for r in rows where r.count == 5 {
                let labels: [MetricFamily.Label] = [.init("application_name", r[0] ?? ""), .init("client_addr", r[1] ?? ""), .init("state", r[2] ?? "")]
                if let v = number(r[3]) { diff.samples.append(.init(labels, v)) }
                if let v = number(r[4]) { lag.samples.append(.init(labels, v)) }
            }
            return [diff, lag]
        },
    ]
}
