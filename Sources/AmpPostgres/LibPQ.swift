#if canImport(Glibc)
import Glibc
#endif
import CLibPQ
import Synchronization
import SystemSupport

/// libpq's functions, resolved from `libpq.so.5` on first use (dlopen): ampd's start and
/// health checks do not need libpq (``WireProbe``), and linking it would load its TLS, GSSAPI
/// and LDAP dependencies into every process start.
struct LibPQFunctions: @unchecked Sendable {
    typealias ConnectDB = @convention(c) (UnsafePointer<CChar>?) -> OpaquePointer?
    typealias StatusFn = @convention(c) (OpaquePointer?) -> ConnStatusType
    typealias ResultStatusFn = @convention(c) (OpaquePointer?) -> ExecStatusType
    typealias StringFn = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    typealias VoidFn = @convention(c) (OpaquePointer?) -> Void
    typealias CountFn = @convention(c) (OpaquePointer?) -> Int32
    typealias Exec = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?
    typealias ErrorField = @convention(c) (OpaquePointer?, Int32) -> UnsafeMutablePointer<CChar>?
    typealias GetValue = @convention(c) (OpaquePointer?, Int32, Int32) -> UnsafeMutablePointer<CChar>?
    typealias GetIsNull = @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    typealias FieldName = @convention(c) (OpaquePointer?, Int32) -> UnsafeMutablePointer<CChar>?
    typealias EncryptPassword = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> UnsafeMutablePointer<CChar>?
    typealias FreeMemory = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias LibVersion = @convention(c) () -> Int32
    typealias ConninfoParse = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> UnsafeMutablePointer<PQconninfoOption>?
    typealias ConninfoFree = @convention(c) (UnsafeMutablePointer<PQconninfoOption>?) -> Void

    let connectdb: ConnectDB
    let status: StatusFn
    let errorMessage: StringFn
    let finish: VoidFn
    let exec: Exec
    let resultStatus: ResultStatusFn
    let resultErrorMessage: StringFn
    let resultErrorField: ErrorField
    let ntuples: CountFn
    let nfields: CountFn
    let getisnull: GetIsNull
    let getvalue: GetValue
    let clear: VoidFn
    let fname: FieldName
    /// `PQencryptPasswordConn` and `PQfreemem` (libpq 10+).
    let encryptPassword: EncryptPassword?
    let freemem: FreeMemory?
    /// `PQlibVersion`: e.g. 150020 for 15.20.
    let libVersion: LibVersion?
    /// `PQconninfoParse` and `PQconninfoFree`.
    let conninfoParse: ConninfoParse?
    let conninfoFree: ConninfoFree?

    /// The loaded library, or why it could not be loaded.
    static let shared: Result<LibPQFunctions, LibPQError> = {
        guard let handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(LibPQError(message: "cannot load libpq.so.5 (\(why)); install it (Debian: apt install libpq5)"))
        }
        func sym<T>(_ name: String, _ type: T.Type) -> T? {
            dlsym(handle, name).map { unsafeBitCast($0, to: type) }
        }
        guard let connectdb = sym("PQconnectdb", ConnectDB.self), let status = sym("PQstatus", StatusFn.self),
              let errorMessage = sym("PQerrorMessage", StringFn.self),
              let finish = sym("PQfinish", VoidFn.self), let exec = sym("PQexec", Exec.self),
              let resultStatus = sym("PQresultStatus", ResultStatusFn.self),
              let resultErrorMessage = sym("PQresultErrorMessage", StringFn.self),
              let resultErrorField = sym("PQresultErrorField", ErrorField.self), let ntuples = sym("PQntuples", CountFn.self),
              let nfields = sym("PQnfields", CountFn.self), let getisnull = sym("PQgetisnull", GetIsNull.self),
              let getvalue = sym("PQgetvalue", GetValue.self), let clear = sym("PQclear", VoidFn.self),
              let fname = sym("PQfname", FieldName.self)
        else {
            return .failure(LibPQError(message: "libpq.so.5 lacks a function amp needs; install a current libpq5"))
        }
        return .success(LibPQFunctions(
            connectdb: connectdb, status: status, errorMessage: errorMessage, finish: finish, exec: exec,
            resultStatus: resultStatus, resultErrorMessage: resultErrorMessage, resultErrorField: resultErrorField,
            ntuples: ntuples, nfields: nfields, getisnull: getisnull, getvalue: getvalue, clear: clear, fname: fname,
            encryptPassword: sym("PQencryptPasswordConn", EncryptPassword.self), freemem: sym("PQfreemem", FreeMemory.self),
            libVersion: sym("PQlibVersion", LibVersion.self), conninfoParse: sym("PQconninfoParse", ConninfoParse.self),
            conninfoFree: sym("PQconninfoFree", ConninfoFree.self)))
    }()
}

/// Minimal synchronous libpq access for small queries (readiness and health use ``WireProbe``).
///
/// Connections go over the Unix socket only and are short-lived.
/// See <https://www.postgresql.org/docs/15/libpq-connect.html>.
public enum LibPQ {
    /// Builds a libpq key/value connection string, quoting each value.
    public static func conninfo(_ parameters: [(String, String)]) -> String {
        parameters.map { key, value in
            let escaped = value.replacing("\\", with: "\\\\").replacing("'", with: "\\'")
            return "\(key)='\(escaped)'"
        }.joined(separator: " ")
    }

    /// Connects, runs `sql`, and returns every row's columns as text (NULL as `nil`).
    ///
    /// - Throws: ``LibPQError`` with libpq's message (and the SQLSTATE when the server sent one).
    public static func rows(_ conninfo: String, _ sql: String) throws(LibPQError) -> [[String?]] {
        try LibPQConnection(conninfo).rows(sql)
    }

    /// The connection string of a server on a Unix socket: `host` (the socket directory),
    /// `port`, `dbname`, and `user`, `application_name` and `connect_timeout` where given.
    public static func socketConninfo(
        directory: String, port: Int, database: String, user: String? = nil, application: String? = nil, connectTimeout: Int = 10
    ) -> String {
        var parameters = [("host", directory), ("port", "\(port)"), ("dbname", database)]
        if let user { parameters.append(("user", user)) }
        parameters.append(("connect_timeout", "\(connectTimeout)"))
        if let application { parameters.append(("application_name", application)) }
        return conninfo(parameters)
    }

    /// Quotes an SQL string literal ('text', with inner quotes doubled; standard strings).
    public static func quoteLiteral(_ text: String) -> String {
        "'" + text.replacing("'", with: "''") + "'"
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

    /// The major version of the loaded libpq (e.g. 15), or nil when it cannot be loaded.
    public static var libraryMajorVersion: Int? {
        guard case .success(let pq) = LibPQFunctions.shared, let v = pq.libVersion?() else { return nil }
        return Int(v) / 10000
    }

    /// The options a connection string or URL sets, as libpq reads it (`PQconninfoParse`:
    /// no defaults, no service file). Throws libpq's message for a malformed one.
    ///
    /// See <https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNSTRING>.
    public static func parseConninfo(_ text: String) throws(LibPQError) -> [(key: String, value: String)] {
        let pq = try LibPQFunctions.shared.get()
        guard let parse = pq.conninfoParse, let free = pq.conninfoFree, let freemem = pq.freemem else {
            throw LibPQError(message: "libpq.so.5 has no PQconninfoParse; install a current libpq5")
        }
        var error: UnsafeMutablePointer<CChar>?
        guard let options = parse(text, &error) else {
            let message = error.map { String(cString: $0).trimmingWhitespace } ?? "out of memory"
            if let error { freemem(error) }
            throw LibPQError(message: message)
        }
        defer { free(options) }
        var out: [(key: String, value: String)] = []
        var i = 0
        while let keyword = options[i].keyword {
            if let value = options[i].val { out.append((String(cString: keyword), String(cString: value))) }
            i += 1
        }
        return out
    }

    static func trimmed(_ message: UnsafeMutablePointer<CChar>?) -> String {
        guard let message else { return "unknown libpq error" }
        return String(cString: message).trimmingWhitespace
    }
}

/// One open libpq connection (`PGconn`), closed when the value goes away. Not for concurrent
/// use: whoever holds it runs one query at a time (``LibPQSessionSlot`` hands it out).
public final class LibPQConnection: @unchecked Sendable {
    private let pq: LibPQFunctions
    private let conn: OpaquePointer

    /// Connects with `conninfo` (blocking; bounded by its `connect_timeout`).
    public init(_ conninfo: String) throws(LibPQError) {
        pq = try LibPQFunctions.shared.get()
        guard let conn = pq.connectdb(conninfo) else { throw LibPQError(message: "out of memory") }
        guard pq.status(conn) == CONNECTION_OK else {
            let message = LibPQ.trimmed(pq.errorMessage(conn))
            pq.finish(conn)
            throw LibPQError(message: message)
        }
        self.conn = conn
    }

    deinit { pq.finish(conn) }

    /// Sets `role`'s password as a SCRAM-SHA-256 verifier computed here
    /// (`PQencryptPasswordConn`), so the clear text never reaches the server, its log or
    /// `pg_stat_statements`.
    ///
    /// See <https://www.postgresql.org/docs/15/libpq-misc.html#LIBPQ-PQENCRYPTPASSWORDCONN>.
    public func setPassword(role: String, password: String) throws(LibPQError) {
        guard let encrypt = pq.encryptPassword, let free = pq.freemem else {
            throw LibPQError(message: "libpq.so.5 has no PQencryptPasswordConn; install a current libpq5")
        }
        guard let verifier = encrypt(conn, password, role, "scram-sha-256") else {
            throw LibPQError(message: "cannot compute the SCRAM verifier: \(LibPQ.trimmed(pq.errorMessage(conn)))")
        }
        defer { free(verifier) }
        let text = String(cString: verifier)
        guard text.hasPrefix("SCRAM-SHA-256$"), !text.contains("'") else { throw LibPQError(message: "unexpected SCRAM verifier from libpq") }
        // Not even the verifier goes into pg_stat_statements (a placeholder when it is not loaded).
        _ = try rows("SET pg_stat_statements.track_utility = off; ALTER ROLE \(LibPQ.quoteIdentifier(role)) PASSWORD '\(text)'")
    }

    /// Whether the connection is still usable (libpq's `PQstatus`).
    public var isOpen: Bool { pq.status(conn) == CONNECTION_OK }

    /// Runs `sql` and returns every row's columns as text (NULL as `nil`).
    ///
    /// - Throws: ``LibPQError`` with libpq's message (and the SQLSTATE when the server sent one).
    public func rows(_ sql: String) throws(LibPQError) -> [[String?]] { try table(sql).rows }

    /// Runs `sql` and returns the columns' names and every row's columns as text (NULL as `nil`).
    public func table(_ sql: String) throws(LibPQError) -> (columns: [String], rows: [[String?]]) {
        guard let result = pq.exec(conn, sql) else { throw LibPQError(message: LibPQ.trimmed(pq.errorMessage(conn))) }
        defer { pq.clear(result) }
        let status = pq.resultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            let code = pq.resultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw LibPQError(message: LibPQ.trimmed(pq.resultErrorMessage(result)), sqlState: code)
        }
        var rows: [[String?]] = []
        for row in 0..<pq.ntuples(result) {
            var columns: [String?] = []
            for column in 0..<pq.nfields(result) {
                columns.append(pq.getisnull(result, row, column) == 1 ? nil : pq.getvalue(result, row, column).map { String(cString: $0) })
            }
            rows.append(columns)
        }
        let names = (0..<pq.nfields(result)).map { pq.fname(result, $0).map { String(cString: $0) } ?? "" }
        return (names, rows)
    }
}

/// Keeps idle connections for reuse (one by default), so that frequent small queries (ampd's
/// status statistics, the test-database pool's checks) skip PostgreSQL's backend start-up: a
/// query takes an idle connection or opens a new one, and gives it back while fewer than
/// `capacity` are kept and it still works. A pooled connection that broke (the server
/// restarted) is dropped and the query retried once on a new one. Blocking: call from a thread
/// of its own.
public final class LibPQSessionSlot: Sendable {
    private let idle = Mutex<[LibPQConnection]>([])
    /// How many idle connections are kept.
    public let capacity: Int

    public init(capacity: Int = 1) { self.capacity = max(1, capacity) }

    /// Runs `sql` over `conninfo` on an idle connection or a new one.
    public func rows(_ conninfo: String, _ sql: String) throws(LibPQError) -> [[String?]] {
        if let pooled = idle.withLock({ $0.popLast() }) {
            do {
                let rows = try pooled.rows(sql)
                giveBack(pooled)
                return rows
            } catch {
                if error.sqlState != nil && pooled.isOpen {
                    giveBack(pooled)
                    throw error
                }
                // The connection broke: fall through to a new one.
            }
        }
        let connection = try LibPQConnection(conninfo)
        let rows = try connection.rows(sql)
        giveBack(connection)
        return rows
    }

    /// Closes the idle connections (before the server stops, or when their database is copied).
    public func close() { idle.withLock { $0 = [] } }

    private func giveBack(_ connection: LibPQConnection) {
        guard connection.isOpen else { return }
        idle.withLock { if $0.count < capacity { $0.append(connection) } }
    }
}

/// Every connection a process keeps open between calls (ampd's read-only session, the
/// test-database pool's checks), in one registry, so that a copy of the database they sit on
/// can close them first: `CREATE DATABASE … TEMPLATE x` fails while any session is connected
/// to `x`, and ampd's own idle sessions must never be what blocks what ampd is asked to do.
public final class LibPQSessions: Sendable {
    private let slots = Mutex<[LibPQSessionSlot]>([])

    public init() {}

    /// A new slot of kept connections, registered here.
    public func slot(capacity: Int = 1) -> LibPQSessionSlot {
        let slot = LibPQSessionSlot(capacity: capacity)
        slots.withLock { $0.append(slot) }
        return slot
    }

    /// Closes every kept connection.
    public func closeAll() {
        for slot in slots.withLock({ $0 }) { slot.close() }
    }

    /// Runs `copy` (a `CREATE DATABASE … TEMPLATE source`) with none of the kept connections
    /// on `source` when they sit on it (`keptOn`). A kept connection opened again in between
    /// (a background check) is closed and the copy tried again, up to three times; a session
    /// of anyone else's still fails with `55006` (object_in_use).
    public func copying<T>(source: String, keptOn database: String, _ copy: () throws(LibPQError) -> T) throws(LibPQError) -> T {
        var attempt = 0
        while true {
            if source == database { closeAll() }
            do {
                return try copy()
            } catch {
                attempt += 1
                guard error.sqlState == "55006", source == database, attempt < 3 else { throw error }
                usleep(50_000 * UInt32(attempt))
            }
        }
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
