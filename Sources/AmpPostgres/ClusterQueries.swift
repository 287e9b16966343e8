/// The SQL ampd runs on its cluster, in one place: each statement built from names already
/// checked at the edge (`Metadb.databaseNameProblem`: a-z, 0-9, `_` and `-`; identifiers are
/// quoted all the same), next to the decoding of its rows.
///
/// See <https://www.postgresql.org/docs/15/sql-createdatabase.html>,
/// <https://www.postgresql.org/docs/15/functions-admin.html> and
/// <https://www.postgresql.org/docs/15/pgstatstatements.html>.
public enum ClusterQueries {
    // MARK: - databases

    /// Name, size (0 where the role may not connect) and owner.
    static let databaseColumns = "datname, CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) ELSE 0 END, pg_get_userbyid(datdba)"

    /// A row of ``listDatabases`` or ``database(_:)``.
    public struct DatabaseRow: Sendable, Equatable {
        public var name: String
        public var sizeBytes: Int64
        public var owner: String

        public init(_ row: [String?]) {
            name = row.first.flatMap { $0 } ?? ""
            sizeBytes = row.count > 1 ? Int64(row[1] ?? "") ?? 0 : 0
            owner = row.count > 2 ? row[2] ?? "" : ""
        }
    }

    /// The databases a client can connect to, by name.
    public static let listDatabases = "SELECT \(databaseColumns) FROM pg_database WHERE datallowconn ORDER BY datname"

    /// One database (no row: none of that name).
    public static func database(_ name: String) -> String {
        "SELECT \(databaseColumns) FROM pg_database WHERE datname = \(LibPQ.quoteLiteral(name))"
    }

    /// Whether a database exists (one row) or not (none).
    public static func databaseExists(_ name: String) -> String {
        "SELECT 1 FROM pg_database WHERE datname = \(LibPQ.quoteLiteral(name))"
    }

    /// One row with the size in bytes (an error `3D000` when there is no such database).
    public static func databaseSize(_ name: String) -> String {
        "SELECT pg_database_size(\(LibPQ.quoteLiteral(name)))::bigint"
    }

    /// Ends every other session on `name` (`createdb --force`).
    public static func terminateSessions(on name: String) -> String {
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(LibPQ.quoteLiteral(name)) AND pid <> pg_backend_pid()"
    }

    /// The other sessions on `name`: PID, user, application and start, oldest first.
    public static func sessions(on name: String) -> String {
        """
        SELECT pid, usename, coalesce(nullif(application_name, ''), 'no application name'), to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS')
        FROM pg_stat_activity WHERE datname = \(LibPQ.quoteLiteral(name)) AND pid <> pg_backend_pid() ORDER BY backend_start
        """
    }

    /// `CREATE DATABASE name [TEMPLATE t] [STRATEGY s]` (STRATEGY only on 15 and later).
    public static func createDatabase(_ name: String, template: String? = nil, strategy: String? = nil, serverMajor: Int) -> String {
        var sql = "CREATE DATABASE \(LibPQ.quoteIdentifier(name))"
        if let template { sql += " TEMPLATE \(LibPQ.quoteIdentifier(template))" }
        if let strategy, serverMajor >= 15 { sql += " STRATEGY \(strategy)" }
        return sql
    }

    /// `DROP DATABASE [IF EXISTS] name [WITH (FORCE)]`.
    public static func dropDatabase(_ name: String, force: Bool, ifExists: Bool = false) -> String {
        "DROP DATABASE \(ifExists ? "IF EXISTS " : "")\(LibPQ.quoteIdentifier(name))\(force ? " WITH (FORCE)" : "")"
    }

    /// `COMMENT ON DATABASE name IS 'text'`.
    public static func comment(on name: String, _ text: String) -> String {
        "COMMENT ON DATABASE \(LibPQ.quoteIdentifier(name)) IS \(LibPQ.quoteLiteral(text))"
    }

    // MARK: - status and statements

    /// One row: the size of every database (or `cachedSize`) and the client sessions but this
    /// one, then (on amp's own cluster) ``Replication/figuresColumns``; `onlyConnectable` on an
    /// external server, whose other databases refuse.
    public static func statistics(cachedSize: Int64?, onlyConnectable: Bool) -> String {
        let filter = onlyConnectable ? " WHERE datallowconn AND has_database_privilege(oid, 'CONNECT')" : ""
        let size = cachedSize.map { "\($0)::bigint" } ?? "(SELECT sum(pg_database_size(oid)) FROM pg_database\(filter))::bigint"
        return """
            SELECT \(size),
                   (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())\(onlyConnectable ? "" : ",\n" + Replication.figuresColumns)
            """
    }

    /// The statements with the most total execution time (database, query, calls, total ms,
    /// mean ms, rows), of one database or all.
    public static func topStatements(database: String?, limit: Int) -> String {
        let filter = database.map { "WHERE d.datname = \(LibPQ.quoteLiteral($0))" } ?? ""
        return """
            SELECT d.datname, s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows
            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \(filter)
            ORDER BY s.total_exec_time DESC LIMIT \(min(max(limit, 1), 1000))
            """
    }

    public static let resetStatementStatistics = "SELECT pg_stat_statements_reset()"

    // MARK: - test databases

    /// A template's open sessions and its activity counters (sessions, commits, rollbacks,
    /// tuples written), which change whenever anything is done in it.
    public static func activity(of template: String) -> String {
        """
        SELECT numbackends, sessions, xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted
        FROM pg_stat_database WHERE datname = \(LibPQ.quoteLiteral(template))
        """
    }

    /// The names (space-separated) of amp's leftover databases: those with `comment`, named
    /// with `prefix`, or temporary databases of imports and copies (`NAME__import_PID`,
    /// `NAME__amp_copy_PID`).
    public static func leftoverDatabases(comment: String, prefix: String) -> String {
        let like = prefix.replacing("_", with: "\\_") + "%"
        return """
            SELECT string_agg(datname, ' ') FROM pg_database
            WHERE shobj_description(oid, 'pg_database') = \(LibPQ.quoteLiteral(comment)) OR datname LIKE \(LibPQ.quoteLiteral(like))
               OR datname ~ '__(import|amp_copy)_[0-9]+$'
            """
    }
}
