import AmpPostgres
import Testing

@Suite("external server URLs (libpq's parser, no connection)")
struct ExternalServerTests {
    @Test("display, conninfo and the URL shown: no password, amp's defaults added, database swapped")
    func shapes() throws {
        let s = try ExternalServer(url: "postgresql://app@db.example.com:6432/shop?sslmode=require", passFile: "/home/u/.config/amp/credentials/p.pgpass", libpqMajor: 15)
        #expect(s.display == "db.example.com:6432" && s.usesTLS && s.database == "shop")
        #expect(s.conninfo.contains("passfile='/home/u/.config/amp/credentials/p.pgpass'") && s.conninfo.contains("connect_timeout='5'"))
        #expect(s.conninfo(database: "postgres", application: "amp-push").contains("dbname='postgres'"))
        #expect(s.conninfo(database: "postgres", application: "amp-push").contains("application_name='amp-push'"))
        #expect(s.url(user: "app", database: "shop") == "postgresql://app@db.example.com:6432/shop?sslmode=require")
        #expect(s.environment(user: "app", database: "shop")["PGPASSFILE"] == "/home/u/.config/amp/credentials/p.pgpass")
        #expect(throws: LibPQError.self) { try ExternalServer(url: "postgresql://app:pw@db/shop", passFile: nil, libpqMajor: 15) }
        #expect(throws: LibPQError.self) { try ExternalServer(url: "postgresql://db/shop?nosuchoption=1", passFile: nil, libpqMajor: 15) }
        let v6 = try ExternalServer(url: "postgresql://app@[::1]:5433/x", passFile: nil, libpqMajor: 15)
        #expect(v6.display == "[::1]:5433")
    }

    @Test("verify-full without a root certificate uses the system's CA store (libpq 15: the bundle; 16+: sslrootcert=system)")
    func systemCAStore() throws {
        let old = try ExternalServer(url: "postgresql://app@db/shop?sslmode=verify-full", passFile: nil, libpqMajor: 15)
        #expect(old.systemRootCertificate == ExternalServer.systemCABundle)
        #expect(old.conninfo.contains("sslrootcert='/etc/ssl/certs/ca-certificates.crt'"))
        let new = try ExternalServer(url: "postgresql://app@db/shop?sslmode=verify-full", passFile: nil, libpqMajor: 16)
        #expect(new.systemRootCertificate == nil && new.conninfo.contains("sslrootcert='system'"))
        let named = try ExternalServer(url: "postgresql://app@db/shop?sslmode=verify-full&sslrootcert=system", passFile: nil, libpqMajor: 15)
        #expect(named.systemRootCertificate == ExternalServer.systemCABundle && !named.conninfo.contains("'system'"))
        let own = try ExternalServer(url: "postgresql://app@db/shop?sslmode=verify-full&sslrootcert=/ca.pem", passFile: nil, libpqMajor: 15)
        #expect(own.systemRootCertificate == nil && own.conninfo.contains("sslrootcert='/ca.pem'"))
    }

    @Test("failures that waiting cannot fix are told apart from an unreachable server")
    func permanence() {
        #expect(ExternalServer.isPermanent(LibPQError(message: "x", sqlState: "28P01")))
        #expect(ExternalServer.isPermanent(LibPQError(message: "server certificate for \"127.0.0.1\" does not match host name \"localhost\"")))
        #expect(!ExternalServer.isPermanent(LibPQError(message: "connection to server at \"127.0.0.1\", port 1 failed: Connection refused")))
    }
}
