import AmpPostgres

/// How PgBouncer finds a client's password without a password file: `auth_query` runs, as
/// ``authRole`` (a login role without a password, so it can log in on the socket only),
/// ``lookupFunction``: a `SECURITY DEFINER` function owned by ``ownerRole``, a role that
/// cannot log in and may read only four columns of `pg_authid`, with a fixed `search_path`
/// (so that no object a user creates can stand in for a catalog: the lesson of
/// CVE-2025-12819 and of PostgreSQL's own advice on security definer functions).
///
/// PgBouncer 1.18 (Debian 12) runs `auth_query` in the database the client asks for
/// (`auth_dbname` came in 1.19), so the function is in every database that takes
/// connections, and in `template1` so that new databases have it.
///
/// See <https://www.pgbouncer.org/config.html#auth_query> and
/// <https://www.postgresql.org/docs/15/sql-createfunction.html#SQL-CREATEFUNCTION-SECURITY>.
public enum PoolAuth {
    /// The login role PgBouncer runs `auth_query` as.
    public static let authRole = "amp_pool_auth"
    /// The role that owns the lookup function and may read the password column.
    public static let ownerRole = "amp_pool_owner"
    /// The schema of the lookup function (left out of amp's dumps: `pg_dump --exclude-schema`).
    public static let schema = DatabaseDump.ampSchema
    /// The lookup function.
    public static let lookupFunction = "amp_pool.lookup"
    /// The admin console's user: no role of the cluster, no password, the socket only.
    public static let adminUser = "amp_pool_admin"
    /// `auth_query`.
    public static let query = "SELECT usename, passwd FROM amp_pool.lookup($1)"

    /// The roles, once per cluster (idempotent; run as a superuser).
    public static let roles = """
        DO $amp$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'amp_pool_owner') THEN
            CREATE ROLE amp_pool_owner NOLOGIN;
          END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'amp_pool_auth') THEN
            CREATE ROLE amp_pool_auth LOGIN;
          END IF;
        END
        $amp$;
        ALTER ROLE amp_pool_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
        ALTER ROLE amp_pool_auth LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD NULL;
        """

    /// The schema and function in one database (idempotent; run as a superuser in it). The
    /// column grant on `pg_authid` is per database too: a shared catalog's privileges live in
    /// each database's `pg_class`.
    public static let function = """
        GRANT SELECT (rolname, rolpassword, rolcanlogin, rolvaliduntil) ON pg_catalog.pg_authid TO amp_pool_owner;
        CREATE SCHEMA IF NOT EXISTS amp_pool AUTHORIZATION amp_pool_owner;
        REVOKE ALL ON SCHEMA amp_pool FROM PUBLIC;
        GRANT USAGE ON SCHEMA amp_pool TO amp_pool_auth;
        CREATE OR REPLACE FUNCTION amp_pool.lookup(p_user pg_catalog.name, OUT usename pg_catalog.name, OUT passwd pg_catalog.text)
          RETURNS SETOF record LANGUAGE sql STABLE STRICT SECURITY DEFINER
          SET search_path = pg_catalog, pg_temp
          AS $amp$
            SELECT a.rolname, a.rolpassword FROM pg_catalog.pg_authid AS a
            WHERE a.rolname OPERATOR(pg_catalog.=) p_user AND a.rolcanlogin
              AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil OPERATOR(pg_catalog.>) pg_catalog.now())
          $amp$;
        ALTER FUNCTION amp_pool.lookup(pg_catalog.name) OWNER TO amp_pool_owner;
        REVOKE ALL ON FUNCTION amp_pool.lookup(pg_catalog.name) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION amp_pool.lookup(pg_catalog.name) TO amp_pool_auth;
        """

    /// The databases that take connections (where the function must be): oid and name.
    public static let connectableDatabases = """
        SELECT oid::text, datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname
        """
}
