import CLibPQ

/// Minimal synchronous libpq access for readiness checks and small queries.
///
/// Connections go over the Unix socket only and are short-lived.
/// See <https://www.postgresql.org/docs/15/libpq-connect.html>.
public enum LibPQ {
    /// The result of `PQping`.
    public enum PingResult: Sendable, Equatable {
        /// The server accepts connections.
        case ok
        /// The server is up but refuses connections (starting up, shutting down, in recovery).
        case rejecting
        /// No server answered.
        case noResponse
        /// The connection parameters are invalid.
        case noAttempt
    }

    /// Builds a libpq key/value connection string, quoting each value.
    public static func conninfo(_ parameters: [(String, String)]) -> String {
        parameters.map { key, value in
            let escaped = value.replacing("\\", with: "\\\\").replacing("'", with: "\\'")
            return "\(key)='\(escaped)'"
        }.joined(separator: " ")
    }

    /// `PQping(conninfo)`: whether the server accepts connections, without authenticating.
    public static func ping(_ conninfo: String) -> PingResult {
        switch PQping(conninfo) {
        case PQPING_OK: return .ok
        case PQPING_REJECT: return .rejecting
        case PQPING_NO_RESPONSE: return .noResponse
        default: return .noAttempt
        }
    }

    /// Connects, runs `sql`, and returns every row's columns as text (NULL as `nil`).
    ///
    /// - Throws: ``LibPQError`` with libpq's message (and the SQLSTATE when the server sent one).
    public static func rows(_ conninfo: String, _ sql: String) throws(LibPQError) -> [[String?]] {
        guard let conn = PQconnectdb(conninfo) else { throw LibPQError(message: "out of memory") }
        defer { PQfinish(conn) }
        guard PQstatus(conn) == CONNECTION_OK else { throw LibPQError(message: trimmed(PQerrorMessage(conn))) }
        guard let result = PQexec(conn, sql) else { throw LibPQError(message: trimmed(PQerrorMessage(conn))) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            let code = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw LibPQError(message: trimmed(PQresultErrorMessage(result)), sqlState: code)
        }
        var rows: [[String?]] = []
        for row in 0..<PQntuples(result) {
            var columns: [String?] = []
            for column in 0..<PQnfields(result) {
                columns.append(PQgetisnull(result, row, column) == 1 ? nil : PQgetvalue(result, row, column).map { String(cString: $0) })
            }
            rows.append(columns)
        }
        return rows
    }

    /// Quotes an SQL identifier ("name", with inner quotes doubled).
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacing("\"", with: "\"\"") + "\""
    }

    /// Connects, runs `sql`, and returns the first column of each row (NULL as `nil`).
    ///
    /// - Throws: ``LibPQError`` with libpq's message when connecting or the query fails.
    public static func query(_ conninfo: String, _ sql: String) throws(LibPQError) -> [String?] {
        try rows(conninfo, sql).map { $0.first ?? nil }
    }

    private static func trimmed(_ message: UnsafeMutablePointer<CChar>?) -> String {
        guard let message else { return "unknown libpq error" }
        return String(cString: message).trimmed
    }
}

/// An error reported by libpq (connection or query).
public struct LibPQError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The SQLSTATE of a server error (e.g. `42P04` duplicate_database), when there was one.
    public var sqlState: String?
    public var description: String { message }

    public init(message: String, sqlState: String? = nil) {
        self.message = message
        self.sqlState = sqlState
    }
}
