import AmpConfig
import AmpPool
import Testing

@Suite struct PoolPlanTests {
    func plan(size: Int? = nil, maxClients: Int? = nil, maxConnections: Int = 100, cpus: Int = 2, limit: Int = 8192) -> Result<PoolPlan, PoolPlan.Problem> {
        PoolPlan.decide(mode: .transaction, size: size, maxClients: maxClients, maxConnections: maxConnections, cpus: cpus, descriptorLimit: limit)
    }

    @Test func defaultsFollowTheCPUsWithinMaxConnections() throws {
        #expect(try plan().get().serverConnections == 8)
        #expect(try plan(cpus: 1).get().serverConnections == 4)
        #expect(try plan(cpus: 64).get().serverConnections == 90)
        // 200 clients against max_connections = 50: the pool keeps 10 for direct sessions.
        #expect(try plan(maxConnections: 50, cpus: 16).get().serverConnections == 40)
        #expect(try plan(maxConnections: 12).get().serverConnections == 2)
    }

    @Test func anExplicitSizeIsKeptOrRefusedWithTheFix() throws {
        #expect(try plan(size: 20).get().serverConnections == 20)
        guard case .failure(let p) = plan(size: 45, maxConnections: 50) else { Issue.record("accepted"); return }
        #expect(p.message.contains("[pool] size = 45") && p.message.contains("lower size"))
        guard case .failure(let q) = plan(maxConnections: 10) else { Issue.record("accepted"); return }
        #expect(q.message.contains("raise max_connections"))
    }

    @Test func clientsFollowTheDescriptorLimit() throws {
        #expect(try plan(limit: 1024).get().maxClients == 1024 - 8 - 64)
        #expect(try plan(limit: 1_048_576).get().maxClients == 10_000)
        let explicit = try plan(maxClients: 5000, limit: 1024).get()
        #expect(explicit.maxClients == 5000 && explicit.notes.count == 1 && explicit.notes[0].contains("LimitNOFILE"))
        #expect(try plan(maxClients: 300).get().notes.isEmpty)
    }
}

@Suite struct PgBouncerConfigurationTests {
    let plan = PoolPlan(mode: .transaction, serverConnections: 8, maxClients: 900)

    @Test func theIniNamesTheSocketTheAuthQueryAndTheSizes() {
        let c = PgBouncerConfiguration(directory: "/p/.amp/pool", socketDirectory: "/p/.amp/me'ta", postgresPort: 5432, port: 6432, plan: plan)
        let ini = c.ini
        #expect(ini.contains("* = host='/p/.amp/me\\'ta' port=5432\n"))
        #expect(ini.contains("listen_addr = \n") && ini.contains("listen_port = 6432\n"))
        #expect(ini.contains("auth_query = SELECT usename, passwd FROM amp_pool.lookup($1)\n"))
        #expect(ini.contains("auth_user = amp_pool_auth\n") && ini.contains("admin_users = amp_pool_admin\n"))
        #expect(ini.contains("default_pool_size = 8\n") && ini.contains("max_db_connections = 8\n") && ini.contains("max_client_conn = 900\n"))
        #expect(ini.contains("pool_mode = transaction\n") && ini.contains("client_tls_sslmode = disable\n"))
        #expect(!ini.contains("password"))
        #expect(c.socketPath == "/p/.amp/me'ta/.s.PGSQL.6432")
        #expect(c.users == "\"amp_pool_admin\" \"\"\n")
    }

    @Test func tcpNeedsSCRAMAndTLSWhenOn() {
        var c = PgBouncerConfiguration(directory: "/d", socketDirectory: "/s", postgresPort: 5433, port: 6500, listenHost: "127.0.0.1", plan: plan)
        #expect(c.hba.contains("host all all 0.0.0.0/0 scram-sha-256\n") && !c.hba.contains("trust\nhost all all 0.0.0.0/0 trust"))
        #expect(c.hba.contains("host all amp_pool_admin,amp_pool_auth 0.0.0.0/0 reject\n"))
        // The admin console and amp's own roles: the socket only; the first matching line wins.
        let lines = c.hba.split(separator: "\n")
        #expect(lines.firstIndex(of: "local pgbouncer amp_pool_admin trust")! < lines.firstIndex(of: "local all all trust")!)
        #expect(lines.firstIndex(of: "host all amp_pool_admin,amp_pool_auth ::/0 reject")! < lines.firstIndex(of: "host all all ::/0 scram-sha-256")!)
        c.tls = ("/n/server.crt", "/n/server.key")
        #expect(c.ini.contains("client_tls_sslmode = require\nclient_tls_cert_file = /n/server.crt\nclient_tls_key_file = /n/server.key\n"))
        #expect(c.hba.contains("hostssl all all 0.0.0.0/0 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"))
        #expect(!c.hba.contains("host all all"))
        #expect(c.ini.contains("listen_addr = 127.0.0.1\n"))
    }

    @Test func portsAndPaths() {
        #expect(PgBouncerConfiguration.defaultPort(postgresPort: 5432) == 6432)
        #expect(PgBouncerConfiguration.defaultPort(postgresPort: 6432) == 6433)
        #expect(PgBouncerConfiguration.pathProblem("/a b/c") == nil)
        #expect(PgBouncerConfiguration.pathProblem("/a\nb")?.contains("line break") == true)
    }

    @Test func theLookupIsASecurityDefinerWithAFixedSearchPath() {
        #expect(PoolAuth.function.contains("SECURITY DEFINER") && PoolAuth.function.contains("SET search_path = pg_catalog, pg_temp"))
        #expect(PoolAuth.function.contains("OWNER TO amp_pool_owner") && PoolAuth.function.contains("REVOKE ALL ON FUNCTION amp_pool.lookup(pg_catalog.name) FROM PUBLIC"))
        #expect(PoolAuth.roles.contains("CREATE ROLE amp_pool_owner NOLOGIN") && PoolAuth.function.contains("GRANT SELECT (rolname, rolpassword, rolcanlogin, rolvaliduntil)"))
        #expect(PoolAuth.query.contains(PoolAuth.lookupFunction) && PoolAuth.lookupFunction.hasPrefix(PoolAuth.schema + "."))
        #expect(PoolAuth.function.contains("CREATE SCHEMA IF NOT EXISTS \(PoolAuth.schema) "))
    }
}

@Suite struct PoolFiguresTests {
    @Test func showPoolsIsSummedWithoutTheAdminConsole() throws {
        let columns = ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active", "sv_active_cancel",
                       "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode"]
        let rows: [[String?]] = [
            ["app", "me", "40", "160", "0", "0", "8", "0", "0", "0", "0", "0", "0", "2", "500000", "transaction"],
            ["app2", "me", "1", "0", "0", "0", "0", "0", "0", "1", "2", "0", "1", "0", "0", "transaction"],
            ["pgbouncer", "pgbouncer", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "statement"],
            ["short"],
        ]
        let f = try #require(PoolFigures(columns: columns, rows: rows))
        #expect(f.pools.count == 2)
        #expect(f.clientsActive == 41 && f.clientsWaiting == 160 && f.serversActive == 8 && f.serversIdle == 4)
        #expect(f.maxWaitSeconds == 2.5)
        #expect(PoolFigures(columns: ["database", "user"], rows: []) == nil)
    }
}

@Suite struct PoolSettingsTests {
    @Test func poolSettingsParseAndRefuseWithTheFix() throws {
        let (layer, warnings) = try ConfigLoader.parseFile("[pool]\nenabled = true\nmode = \"session\"\nsize = 12\nmax_clients = 500\nlisten = \"127.0.0.1:6543\"\n", path: "/p/.amp/config.toml", baseDirectory: "/p")
        #expect(warnings.isEmpty && layer.poolEnabled == true && layer.poolMode == .session && layer.poolSize == 12 && layer.poolMaxClients == 500)
        #expect(layer.poolListen == .address(host: "127.0.0.1", port: 6543))
        for bad in ["mode = \"statement\"", "size = 0", "size = \"8\"", "max_clients = 20000"] {
            #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[pool]\n" + bad + "\n", path: "/p/c.toml", baseDirectory: "/p") }
        }
        do {
            _ = try ConfigLoader.parseFile("[pool]\nmode = \"statement\"\n", path: "/p/c.toml", baseDirectory: "/p")
        } catch {
            #expect(error.message.contains("/p/c.toml:2") && error.message.contains("transaction or session"))
        }
    }

    @Test func networkRulesCoverThePool() {
        func check(_ s: AmpSettings) -> String? {
            do { try ConfigurationLayers(file: nil, filePath: "/p/.amp/config.toml", environment: .init(), commandLine: .init(), settings: s).checkNetwork(); return nil } catch { return error.message }
        }
        var s = AmpSettings()
        s.poolListen = .address(host: "127.0.0.1", port: 6500)
        #expect(check(s)?.contains("`enabled = true`") == true)
        s.poolEnabled = true
        #expect(check(s) == nil)
        s.poolListen = .address(host: "0.0.0.0", port: 6500)
        #expect(check(s)?.contains("needs TLS") == true)
        s.tls = true
        #expect(check(s) == nil)
        s.listen = .address(host: "0.0.0.0", port: 6500)
        #expect(check(s)?.contains("another port") == true)
        s = AmpSettings()
        s.poolEnabled = true
        s.externalURL = "postgresql://db.example/app"
        #expect(check(s)?.contains("external server") == true)
    }
}
