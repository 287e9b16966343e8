#if canImport(Glibc)
import Glibc
#endif
import SystemSupport

/// A PostgreSQL server amp does not run (`[postgres] url`): how ampd connects to it and how it
/// is shown. The password is never part of it: libpq finds it in `~/.pgpass`, a `service=`
/// entry of `pg_service.conf`, or the password file given as ``passFile`` (amp's credential).
public struct ExternalServer: Sendable {
    /// The options of the URL as libpq reads them (no password among them).
    public var options: [(key: String, value: String)]
    /// A libpq password file (`passfile=`), when amp holds the password.
    public var passFile: String?
    /// `sslrootcert` added for `verify-ca`/`verify-full` without one: the system's CA bundle.
    public var systemRootCertificate: String?

    /// The Debian/Ubuntu CA bundle (ca-certificates), which libpq before 16 does not use by itself.
    public static let systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

    /// Reads `url` with libpq's own parser. A password in it is refused (it belongs in a
    /// password file). `libpqMajor` decides how the system CA store is reached: libpq 16+
    /// knows `sslrootcert=system`; for older ones amp names the bundle itself.
    public init(url: String, passFile: String?, libpqMajor: Int? = LibPQ.libraryMajorVersion) throws(LibPQError) {
        var options = try LibPQ.parseConninfo(url)
        if options.contains(where: { $0.key == "password" }) {
            throw LibPQError(message: "the URL holds a password; amp keeps passwords out of URLs: use ~/.pgpass or `ampctl init --external`")
        }
        var rootCertificate: String?
        let sslmode = options.last { $0.key == "sslmode" }?.value
        let rootcert = options.last { $0.key == "sslrootcert" }?.value
        if rootcert == "system", (libpqMajor ?? 0) < 16 {
            options.removeAll { $0.key == "sslrootcert" }
            rootCertificate = Self.systemCABundle
        } else if rootcert == nil, sslmode == "verify-full" || sslmode == "verify-ca" {
            // libpq's default is ~/.postgresql/root.crt; without one, the system's store.
            let home = processEnvironment()["HOME"] ?? ""
            if home.isEmpty || access(home + "/.postgresql/root.crt", R_OK) != 0 {
                if (libpqMajor ?? 0) >= 16 { options.append((key: "sslrootcert", value: "system")) } else { rootCertificate = Self.systemCABundle }
            }
        }
        self.options = options
        self.passFile = passFile
        self.systemRootCertificate = rootCertificate
    }

    func value(_ key: String) -> String? { options.last { $0.key == key }?.value }

    /// `HOST:PORT` (libpq's defaults filled in) for messages and the status, or the service.
    public var display: String {
        if let host = value("host") ?? value("hostaddr") {
            let port = value("port") ?? "5432"
            return (host.contains(":") && !host.hasPrefix("/") ? "[\(host)]" : host) + ":" + port
        }
        if let service = value("service") { return "service \(service)" }
        return "localhost:5432"
    }

    /// Whether the URL asks for TLS (sslmode require or stricter).
    public var usesTLS: Bool { ["require", "verify-ca", "verify-full"].contains(value("sslmode") ?? "") }

    /// The connection string ampd uses: the URL's options, then `passfile`, the CA bundle,
    /// `connect_timeout` (5 s unless the URL sets one) and `application_name=ampd`.
    public var conninfo: String { conninfo() }

    /// ``conninfo`` for `database` instead of the URL's (when given) and another application name.
    public func conninfo(database: String? = nil, application: String = "ampd") -> String {
        var pairs = options.filter { $0.key != "application_name" && (database == nil || $0.key != "dbname") }.map { ($0.key, $0.value) }
        if let database { pairs.append(("dbname", database)) }
        if let passFile { pairs.append(("passfile", passFile)) }
        if let systemRootCertificate { pairs.append(("sslrootcert", systemRootCertificate)) }
        if value("connect_timeout") == nil { pairs.append(("connect_timeout", "5")) }
        pairs.append(("application_name", application))
        return LibPQ.conninfo(pairs)
    }

    /// The database the URL names, if any.
    public var database: String? { value("dbname") }

    /// The URL shown to users and tools (no password; amp's additions that a client needs too,
    /// such as the CA bundle, included): `postgresql://USER@HOST:PORT/DB?…`.
    public func url(user: String, database: String) -> String {
        let hostPart: String
        if let host = value("host"), !host.hasPrefix("/"), !host.contains(",") {
            hostPart = (host.contains(":") ? "[\(host)]" : PostgresHandle.percentEncode(host)) + (value("port").map { ":\($0)" } ?? "")
        } else {
            hostPart = ""
        }
        var query: [(String, String)] = []
        for (k, v) in options where !["user", "dbname", "password", "application_name"].contains(k) && !(k == "port" && !hostPart.isEmpty) {
            if k == "host" && !hostPart.isEmpty { continue }
            query.append((k, v))
        }
        if let systemRootCertificate { query.append(("sslrootcert", systemRootCertificate)) }
        var url = "postgresql://\(PostgresHandle.percentEncode(user))@\(hostPart)/\(PostgresHandle.percentEncode(database))"
        if !query.isEmpty { url += "?" + query.map { "\($0.0)=\(PostgresHandle.percentEncode($0.1))" }.joined(separator: "&") }
        return url
    }

    /// libpq's variables for the same connection (`ampctl env`): PGHOST, PGPORT, PGUSER,
    /// PGDATABASE, PGSSLMODE, PGSSLROOTCERT, PGSERVICE, PGPASSFILE, and DATABASE_URL.
    public func environment(user: String, database: String) -> [String: String] {
        var env = ["PGUSER": user, "PGDATABASE": database, "DATABASE_URL": url(user: user, database: database)]
        let names = ["host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                     "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "service": "PGSERVICE", "target_session_attrs": "PGTARGETSESSIONATTRS"]
        for (k, v) in options { if let name = names[k] { env[name] = v } }
        if let systemRootCertificate { env["PGSSLROOTCERT"] = systemRootCertificate }
        if let passFile { env["PGPASSFILE"] = passFile }
        return env
    }

    /// What one query against the server found.
    public struct Answer: Sendable, Equatable {
        public var version: String
        public var user: String
        public var database: String
    }

    /// Whether a failure cannot go away by waiting (a refused password, a missing database or
    /// role, a certificate that does not verify): ampd then fails at once instead of retrying.
    public static func isPermanent(_ error: LibPQError) -> Bool {
        if let state = error.sqlState, state.hasPrefix("28") || state == "3D000" { return true }
        let m = error.message
        return m.contains("password authentication failed") || m.contains("certificate") || m.contains("no password supplied")
            || m.contains("does not exist") || m.contains("pg_hba.conf") || m.contains("SSL error")
    }

    /// Connects and asks for the version, role and database: blocking, bounded by
    /// `connect_timeout`. The error is one line: `HOST:PORT: libpq's first line`.
    public func probe(database: String? = nil) -> Result<Answer, LibPQError> {
        do {
            let rows = try LibPQ.rows(conninfo(database: database), "SELECT current_setting('server_version'), current_user, current_database()")
            guard let row = rows.first, row.count == 3 else { return .failure(LibPQError(message: "\(display): no answer to a query")) }
            return .success(Answer(version: row[0] ?? "?", user: row[1] ?? "?", database: row[2] ?? "?"))
        } catch {
            return .failure(oneLine(error))
        }
    }

    /// libpq's message as one line that names the server (its first line; libpq adds hints
    /// such as "Is the server running…" on the next).
    public func oneLine(_ error: LibPQError) -> LibPQError {
        var first = error.message.split(separator: "\n").first.map { String($0).trimmingWhitespace } ?? error.message
        if first.hasPrefix("FATAL:") { first = String(first.dropFirst(6)).trimmingWhitespace }
        first = first.replacing("failed: FATAL:  ", with: "failed: ")
        let named = first.contains("connection to server at") || first.contains(display) ? first : "\(display): \(first)"
        return LibPQError(message: named, sqlState: error.sqlState)
    }
}
