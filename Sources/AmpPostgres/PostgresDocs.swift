/// The PostgreSQL documentation this library's command lines are written against (IC-11).
///
/// Every PostgreSQL command line the library runs is documented next to the code that runs
/// it, with its flags and a link built on this version, so that supporting a new major
/// version means re-reading the pages named here:
///
/// | binary | role | page |
/// | --- | --- | --- |
/// | `postgres --version` | version of the binaries | <https://www.postgresql.org/docs/15/app-postgres.html> |
/// | `initdb` | create a cluster | <https://www.postgresql.org/docs/15/app-initdb.html> |
/// | `postgres -D … -k …` | run the server | <https://www.postgresql.org/docs/15/app-postgres.html> |
/// | wire protocol 3.0 (``WireProbe``) | readiness and health checks (login, `SHOW server_version`) | <https://www.postgresql.org/docs/15/protocol-flow.html> |
/// | libpq `PQconnectdb`, `PQexec` (dlopen on first use) | statistics, CREATE/DROP DATABASE | <https://www.postgresql.org/docs/15/libpq-connect.html> |
///
/// Tested with PostgreSQL 15 (Debian 12); supported: 13 to 18.
public enum PostgresDocs {
    /// The documentation version the links point at.
    public static let version = "15"
    /// Oldest supported major version.
    public static let oldestSupportedMajor = 13

    /// The documentation page of a binary, e.g. `app(“initdb”)`.
    public static func app(_ binary: String) -> String {
        "https://www.postgresql.org/docs/\(version)/app-\(binary).html"
    }
}
