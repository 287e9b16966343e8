import AmpConfig
import Testing

@Suite("network settings: listen, tls, external url (pure)")
struct NetworkSettingsTests {
    let file = "/p/.amp/config.toml"

    @Test("listen addresses: auto, IPv4, IPv6 in brackets, localhost, *; bad ones are nil")
    func listenParsing() {
        #expect(ListenAddress(parsing: "auto") == .auto)
        #expect(ListenAddress(parsing: "127.0.0.1:5433") == .address(host: "127.0.0.1", port: 5433))
        #expect(ListenAddress(parsing: "[::1]:6000") == .address(host: "::1", port: 6000))
        #expect(ListenAddress(parsing: "localhost:1") == .address(host: "localhost", port: 1))
        #expect(ListenAddress(parsing: "*:5432") == .address(host: "*", port: 5432))
        for bad in ["", "5433", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999999999999999999", "::1:5433",
                    "[::1]5433", "[zz]:1", "example.com:5432", "127.0.0.1:-1", "127.0.0.1:５"] {
            #expect(ListenAddress(parsing: bad) == nil, "\(bad)")
        }
        #expect(ListenAddress.auto.isLoopback && ListenAddress(parsing: "127.0.0.2:1")?.isLoopback == true)
        #expect(ListenAddress(parsing: "[::1]:1")?.isLoopback == true)
        #expect(ListenAddress(parsing: "0.0.0.0:1")?.isLoopback == false && ListenAddress(parsing: "*:1")?.isLoopback == false)
        #expect(ListenAddress(parsing: "[::1]:6000")?.description == "[::1]:6000")
    }

    @Test("config.toml: listen, tls, tls_cert/tls_key and url are read; bad values name the line")
    func fileKeys() throws {
        let (layer, warnings) = try ConfigLoader.parseFile("""
            [postgres]
            listen = "auto"
            tls = true
            tls_cert = "certs/server.crt"
            tls_key = "/etc/k.pem"
            """, path: file, baseDirectory: "/p")
        #expect(warnings.isEmpty)
        #expect(layer.listen == .auto && layer.tls == true && layer.tlsCertificate == "/p/certs/server.crt" && layer.tlsKey == "/etc/k.pem")
        #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[postgres]\nlisten = \"everywhere\"\n", path: file, baseDirectory: "/p") }
        do {
            _ = try ConfigLoader.parseFile("[postgres]\n\nurl = \"postgresql://app:hunter2@db:5432/app\"\n", path: file, baseDirectory: "/p")
            Issue.record("a password in url is refused")
        } catch {
            #expect(error.message.hasPrefix("\(file):3: postgres.url must not contain a password"), "\(error.message)")
            #expect(!error.message.contains("hunter2"), "the password is never echoed: \(error.message)")
        }
        #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[postgres]\nurl = \"mysql://db/app\"\n", path: file, baseDirectory: "/p") }
        #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[postgres]\nurl = \"postgresql:///app\"\n", path: file, baseDirectory: "/p") }
        #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[postgres]\nurl = \"postgresql://db/app?password=x\"\n", path: file, baseDirectory: "/p") }
        let (ok, _) = try ConfigLoader.parseFile("[postgres]\nurl = \"postgresql://app@db.example.com:5432/app?sslmode=verify-full\"\n", path: file, baseDirectory: "/p")
        #expect(ok.externalURL == "postgresql://app@db.example.com:5432/app?sslmode=verify-full")
        #expect(try ConfigLoader.environmentLayer(["AMP_PG_LISTEN": "127.0.0.1:7000"], workingDirectory: "/").listen == .address(host: "127.0.0.1", port: 7000))
        #expect(throws: ConfigError.self) { try ConfigLoader.environmentLayer(["AMP_PG_LISTEN": "nope"], workingDirectory: "/") }
    }

    func layers(_ file: SettingsLayer) -> ConfigurationLayers {
        var settings = AmpSettings()
        settings.apply(file)
        return ConfigurationLayers(file: file, filePath: self.file, environment: SettingsLayer(), commandLine: SettingsLayer(), settings: settings)
    }

    @Test("a listen address others can reach needs TLS; listen and url exclude each other; TLS files come in pairs")
    func combinations() throws {
        var open = SettingsLayer(listen: .address(host: "0.0.0.0", port: 5433))
        do {
            try layers(open).checkNetwork()
            Issue.record("0.0.0.0 without tls is refused")
        } catch {
            #expect(error.message.contains("0.0.0.0:5433") && error.message.contains("tls = true"), "\(error.message)")
        }
        open.tls = true
        try layers(open).checkNetwork()
        var both = SettingsLayer(listen: .auto)
        both.externalURL = "postgresql://app@db/app"
        #expect(throws: ConfigError.self) { try layers(both).checkNetwork() }
        var half = SettingsLayer()
        half.tlsCertificate = "/c.pem"
        #expect(throws: ConfigError.self) { try layers(half).checkNetwork() }
        try layers(SettingsLayer(listen: .auto)).checkNetwork()
    }

    @Test("a password is taken out of a URL; userinfo and query forms; percent-decoded")
    func removingPassword() {
        let a = ExternalURL.removingPassword("postgresql://app:p%40ss:w@db:5432/app?sslmode=require")
        #expect(a.url == "postgresql://app@db:5432/app?sslmode=require" && a.password == "p@ss:w")
        let b = ExternalURL.removingPassword("postgres://app@db/app?password=x%20y&sslmode=require")
        #expect(b.url == "postgres://app@db/app?sslmode=require" && b.password == "x y")
        let c = ExternalURL.removingPassword("postgresql://db/app")
        #expect(c.url == "postgresql://db/app" && c.password == nil)
        #expect(ExternalURL.problem(a.url) == nil && ExternalURL.problem(b.url) == nil)
        // libpq decodes parameter names too: pass%77ord is the password (it reached pg_dump's argv).
        let d = ExternalURL.removingPassword("postgresql://app@db/app?pass%77ord=Qu3ry&sslmode=disable")
        #expect(d.url == "postgresql://app@db/app?sslmode=disable" && d.password == "Qu3ry")
        #expect(ExternalURL.problem("postgresql://app@db/app?pass%77ord=Qu3ry") != nil)
    }

    @Test("the password as written (percent-encoded) is known, for redaction")
    func writtenPasswords() {
        #expect(ExternalURL.writtenPasswords("postgresql://app:Se%40cret%2F99@[::1/shop") == ["Se%40cret%2F99"])
        #expect(ExternalURL.writtenPasswords("postgresql://app@db/x?password=a%20b") == ["a%20b"])
        #expect(ExternalURL.writtenPasswords("postgresql://app@db/x").isEmpty)
    }

    @Test("pgpass lines escape : and backslash")
    func passFileLine() {
        #expect(AmpSecrets.passFileLine(host: "db", port: "5432", user: "app", password: "a:b\\c") == "db:5432:*:app:a\\:b\\\\c")
        #expect(AmpSecrets.passFileLine(host: "", port: "", user: "", password: "x") == "*:*:*:*:x")
    }

    @Test("generated passwords: 32 characters of A-Z a-z 0-9, different each time")
    func generatedPasswords() throws {
        let a = try #require(AmpSecrets.generatePassword()), b = try #require(AmpSecrets.generatePassword())
        #expect(a.count == 32 && a != b)
        #expect(a.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }

    @Test("config edits: url replaced in place, added under [postgres], or the table appended; comments kept")
    func configEdit() throws {
        let kept = try ConfigFileEdit.settingPostgresString("# mine\n[postgres]\nprofile = \"dev\"\nurl = \"postgresql://old/a\"\n", key: "url", value: "postgresql://new/b", path: file)
        #expect(kept == "# mine\n[postgres]\nprofile = \"dev\"\nurl = \"postgresql://new/b\"\n")
        let added = try ConfigFileEdit.settingPostgresString("[postgres]\nprofile = \"dev\"\n", key: "url", value: "postgresql://h/d", path: file)
        #expect(added == "[postgres]\nurl = \"postgresql://h/d\"\nprofile = \"dev\"\n")
        #expect(try ConfigFileEdit.settingPostgresString("", key: "url", value: "postgresql://h/d", path: file) == "[postgres]\nurl = \"postgresql://h/d\"\n")
        let quoted = try ConfigFileEdit.settingPostgresString("", key: "url", value: "postgresql://h/d?options=-c%20a=\"b\"", path: file)
        #expect(try ConfigLoader.parseFile(quoted, path: file, baseDirectory: "/").0.externalURL == "postgresql://h/d?options=-c%20a=\"b\"")
        #expect(throws: ConfigError.self) { try ConfigFileEdit.settingPostgresString("[postgres\n", key: "url", value: "postgresql://h/d", path: file) }
    }
}
