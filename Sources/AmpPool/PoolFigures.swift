/// The pool's figures from PgBouncer's `SHOW POOLS`, summed over the pools of every database
/// and user (the admin console's own `pgbouncer` pool left out).
///
/// See <https://www.pgbouncer.org/usage.html#show-pools>.
public struct PoolFigures: Sendable, Equatable {
    /// Clients linked to a server connection, or idle with nothing to do (`cl_active`).
    public var clientsActive = 0
    /// Clients that sent a query and wait for a server connection (`cl_waiting`).
    public var clientsWaiting = 0
    /// Server connections linked to a client (`sv_active`).
    public var serversActive = 0
    /// Server connections free for a client (`sv_idle` + `sv_used` + `sv_tested` + `sv_login`).
    public var serversIdle = 0
    /// How long the oldest waiting client has waited, in seconds (`maxwait` + `maxwait_us`).
    public var maxWaitSeconds = 0.0
    /// One entry per pool: database, user, and its own figures.
    public var pools: [Pool] = []

    public struct Pool: Sendable, Equatable {
        public var database: String
        public var user: String
        public var clientsActive: Int
        public var clientsWaiting: Int
        public var serversActive: Int
        public var serversIdle: Int
        public var maxWaitSeconds: Double
    }

    public init() {}

    /// Reads `SHOW POOLS` (its columns found by name, so that versions that add columns
    /// still read); nil when a column this needs is missing.
    public init?(columns: [String], rows: [[String?]]) {
        func index(_ name: String) -> Int? { columns.firstIndex(of: name) }
        guard let db = index("database"), let user = index("user"), let clActive = index("cl_active"), let clWaiting = index("cl_waiting"),
              let svActive = index("sv_active"), let svIdle = index("sv_idle") else { return nil }
        let idleColumns = [svIdle] + ["sv_used", "sv_tested", "sv_login"].compactMap(index)
        let maxWait = index("maxwait"), maxWaitMicros = index("maxwait_us")
        for row in rows where row.count == columns.count {
            guard let database = row[db], database != "pgbouncer" else { continue }
            func number(_ i: Int?) -> Int { i.flatMap { row[$0] }.flatMap { Int($0) } ?? 0 }
            let wait = Double(number(maxWait)) + Double(number(maxWaitMicros)) / 1e6
            let pool = Pool(database: database, user: row[user] ?? "", clientsActive: number(clActive), clientsWaiting: number(clWaiting),
                            serversActive: number(svActive), serversIdle: idleColumns.reduce(0) { $0 + number($1) }, maxWaitSeconds: wait)
            pools.append(pool)
            clientsActive += pool.clientsActive
            clientsWaiting += pool.clientsWaiting
            serversActive += pool.serversActive
            serversIdle += pool.serversIdle
            maxWaitSeconds = max(maxWaitSeconds, wait)
        }
    }
}

/// One line of PgBouncer's log on standard error (`2026-12-05 04:23:54.893 UTC [28104] WARNING
/// text`): its level and text, for ampd's log.
public struct PgBouncerLogLine: Sendable, Equatable {
    public enum Level: Sendable, Equatable { case debug, info, warning, error }
    public var level: Level
    public var text: String

    /// Parses a line; one that does not have the shape is kept whole at `info`.
    public init(_ line: String) {
        let words = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: false)
        guard words.count == 6, words[3].hasPrefix("["), words[3].hasSuffix("]") else {
            (level, text) = (.info, line)
            return
        }
        text = String(words[5])
        switch words[4] {
        case "NOISE", "DEBUG": level = .debug
        case "WARNING": level = .warning
        case "ERROR", "FATAL": level = .error
        default: level = .info
        }
    }
}
