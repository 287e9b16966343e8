import AmpProtocol
import Testing
import Varlink

/// The Swift types of `io.amp.Metadb` against its IDL text: they cannot drift apart.
@Suite("io.amp.Metadb: Swift types against the IDL (pure)")
struct MetadbProtocolTests {
    let interface: VarlinkInterface

    init() throws { interface = try Metadb.interface() }

    /// A status with every optional field set, and one with none.
    static let fullStatus: MetadbStatus = {
        var s = MetadbStatus(state: .ready, phase: "ready: u", project: "p", ampdPID: 1, ampDir: "/p/.amp", dataDir: "/p/.amp/metadb", restarts: 2)
        s.postmasterPID = 3
        s.version = "15.4"
        s.socketDir = "/p/.amp/metadb"
        s.url = "postgresql:///postgres"
        s.uptimeSeconds = 1.5
        s.databaseSizeBytes = 1 << 40
        s.connections = 4
        s.healthy = true
        s.lastError = "e"
        s.listen = "127.0.0.1:5433"
        s.tls = true
        s.server = "db:5432"
        s.archive = "streaming"
        s.archiveLagSeconds = 0.3
        s.restorableFrom = "2026-12-04T20:00:00Z"
        s.restorableTo = "2026-12-04T22:30:00Z"
        s.archiveProblem = "p"
        s.operation = "restoring"
        var pool = MetadbPool(state: "running", mode: "transaction", size: 8, maxClients: 900, socket: "/s/.s.PGSQL.6432", listen: "127.0.0.1:6432")
        pool.pid = 42
        pool.port = 6432
        pool.clientsActive = 40
        pool.clientsWaiting = 160
        pool.serversActive = 8
        pool.serversIdle = 0
        pool.maxWaitSeconds = 0.5
        pool.restarts = 1
        s.pool = pool
        s.role = "standby"
        s.replication = MetadbReplication(receiver: "streaming", upstream: "127.0.0.1:5432", slot: "amp_replica_b", lagBytes: 8192, lagSeconds: 0.25,
                                          standbys: [MetadbStandby(name: "c", state: "streaming", lagBytes: 0, lagSeconds: 0.001)])
        return s
    }()
    static let bareStatus = MetadbStatus(state: .starting, phase: "checking the cluster", project: "p", ampdPID: 1, ampDir: "/a", dataDir: "/d")
    static let database = MetadbDatabase(name: "app", sizeBytes: 8_000_000, owner: "me")
    static let snapshot = MetadbSnapshot(name: "before", created: "2026-11-26T04:30:00Z", postgresVersion: "15", sizeBytes: 40_000_000, gitCommit: String(repeating: "a", count: 40))

    static let backup = MetadbBackup(id: "20261204T220000Z", started: "2026-12-04T22:00:00Z", finished: "2026-12-04T22:00:01Z", timeline: 1,
                                     startLSN: "0/2000028", endLSN: "0/2000100", postgresVersion: "15", sizeBytes: 40_000_000, verified: "2026-12-04T22:10:00Z",
                                     parent: "20261204T210000Z")

    /// Sample parameters and replies of every method, with every optional set.
    static func samples(_ method: any MetadbMethod.Type) -> (parameters: JSONObject, reply: JSONObject)? {
        let e = JSONValueEncoder()
        func encode<T: Encodable>(_ v: T) -> JSONObject? { try? e.encodeObject(v) }
        switch method {
        case is Metadb.GetStatus.Type, is Metadb.WatchStatus.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.GetStatus.Reply(status: fullStatus)).map { (p, $0) } }
        case is Metadb.GetConnection.Type:
            let r = Metadb.GetConnection.Reply(url: "u", socketDirectory: "/s", port: 5432, database: "postgres", user: "me", environment: ["PGHOST": "/s"],
                                               listen: "127.0.0.1:5433", tls: false, poolPort: 6432, poolListen: "127.0.0.1:6432")
            return encode(NoParameters()).flatMap { p in encode(r).map { (p, $0) } }
        case is Metadb.ListDatabases.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.ListDatabases.Reply(databases: [database])).map { (p, $0) } }
        case is Metadb.CreateDatabase.Type:
            return encode(Metadb.CreateDatabase.Parameters(name: "app", template: "src", force: true)).flatMap { p in encode(Metadb.CreateDatabase.Reply(database: database)).map { (p, $0) } }
        case is Metadb.DropDatabase.Type:
            return encode(Metadb.DropDatabase.Parameters(name: "app", force: true)).flatMap { p in encode(NoParameters()).map { (p, $0) } }
        case is Metadb.CreateSnapshot.Type:
            return encode(Metadb.CreateSnapshot.Parameters(name: "before")).flatMap { p in encode(Metadb.CreateSnapshot.Reply(snapshot: snapshot)).map { (p, $0) } }
        case is Metadb.ListSnapshots.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.ListSnapshots.Reply(snapshots: [snapshot])).map { (p, $0) } }
        case is Metadb.RestoreSnapshot.Type:
            return encode(Metadb.RestoreSnapshot.Parameters(name: "before")).flatMap { p in encode(NoParameters()).map { (p, $0) } }
        case is Metadb.GetTopStatements.Type:
            let st = MetadbStatement(database: "app", query: "SELECT $1", calls: 3, totalMs: 1.5, meanMs: 0.5, rows: 3)
            return encode(Metadb.GetTopStatements.Parameters(database: "app", limit: 5)).flatMap { p in encode(Metadb.GetTopStatements.Reply(statements: [st])).map { (p, $0) } }
        case is Metadb.ResetStatementStatistics.Type:
            return encode(NoParameters()).flatMap { p in encode(NoParameters()).map { (p, $0) } }
        case is Metadb.ResetCluster.Type:
            return encode(Metadb.ResetCluster.Parameters(seed: true)).flatMap { p in encode(NoParameters()).map { (p, $0) } }
        case is Metadb.AcquireTestDatabase.Type:
            let r = Metadb.AcquireTestDatabase.Reply(database: "amp_testdb_1", url: "u", environment: ["PGDATABASE": "amp_testdb_1"], pooled: true)
            return encode(Metadb.AcquireTestDatabase.Parameters(template: "app")).flatMap { p in encode(r).map { (p, $0) } }
        case is Metadb.ReleaseTestDatabase.Type:
            return encode(Metadb.ReleaseTestDatabase.Parameters(name: "amp_testdb_1")).flatMap { p in encode(NoParameters()).map { (p, $0) } }
        case is Metadb.ListBackups.Type:
            let a = MetadbArchive(state: "streaming", target: "/p/.amp/backup", sizeBytes: 1 << 30, lagSeconds: 0.2, restorableFrom: "2026-12-04T22:00:01Z",
                                  restorableTo: "2026-12-04T22:30:00Z", problem: "p", restorePoints: ["a at 2026-12-04T22:05:00Z"])
            return encode(NoParameters()).flatMap { p in encode(Metadb.ListBackups.Reply(backups: [backup], archive: a)).map { (p, $0) } }
        case is Metadb.CreateBackup.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.CreateBackup.Reply(backup: backup)).map { (p, $0) } }
        case is Metadb.VerifyBackup.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.VerifyBackup.Reply(backup: backup.id, checks: ["ok"])).map { (p, $0) } }
        case is Metadb.CreateRestorePoint.Type:
            return encode(Metadb.CreateRestorePoint.Parameters(name: "a")).flatMap { p in encode(Metadb.CreateRestorePoint.Reply(lsn: "0/3000000", time: "2026-12-04T22:05:00Z")).map { (p, $0) } }
        case is Metadb.GetHistory.Type:
            let sample = MetadbHistorySample(time: 1796439235.5, committed: 45413, rolledBack: 1, rowsRead: 1466072, rowsWritten: 396653, blocksHit: 915785,
                                             blocksRead: 8067, walBytes: 65401560, databaseBytes: 48160618, activeConnections: 1, idleConnections: 2,
                                             idleInTransactionConnections: 3, restarts: 4, state: "ready")
            return encode(Metadb.GetHistory.Parameters(since: 1796435635.5)).flatMap { p in encode(Metadb.GetHistory.Reply(samples: [sample], intervalSeconds: 5)).map { (p, $0) } }
        case is Metadb.Promote.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.Promote.Reply(status: fullStatus)).map { (p, $0) } }
        case is Metadb.GetMetrics.Type:
            return encode(NoParameters()).flatMap { p in encode(Metadb.GetMetrics.Reply(text: "# HELP pg_up x\n# TYPE pg_up gauge\npg_up 1\n")).map { (p, $0) } }
        case is Metadb.RestoreToTime.Type:
            let r = MetadbRestored(backup: backup.id, reachedTime: "2026-12-04T22:04:59Z", reachedLSN: "0/3000000", replayedBytes: 1 << 24, stoppedEarly: "s")
            return encode(Metadb.RestoreToTime.Parameters(target: "10 minutes ago")).flatMap { p in encode(Metadb.RestoreToTime.Reply(restored: r)).map { (p, $0) } }
        case is Metadb.DeleteSnapshot.Type:
            return encode(Metadb.DeleteSnapshot.Parameters(name: "before")).flatMap { p in encode(NoParameters()).map { (p, $0) } }
        default:
            return nil
        }
    }

    /// Every field the IDL declares is in `value` (recursively through named structs), so a
    /// field the Swift type lacks is found, not only a field the IDL lacks.
    func covers(_ value: JSONValue, _ type: VarlinkType, path: String) -> [String] {
        switch (type, value) {
        case (.optional(let t), _): return covers(value, t, path: path)
        case (.named(let n), _): return interface.types[n].map { covers(value, $0, path: path) } ?? ["\(path): unknown type \(n)"]
        case (.structure(let fields), .object(let o)):
            var missing: [String] = []
            for f in fields {
                guard let v = o[f.name] else { missing.append("\(path).\(f.name)"); continue }
                missing += covers(v, f.type, path: "\(path).\(f.name)")
            }
            return missing
        case (.array(let t), .array(let items)): return items.flatMap { covers($0, t, path: path + "[]") }
        default: return []
        }
    }

    @Test("every IDL method has a Swift type and every Swift type an IDL method")
    func sameMethods() {
        #expect(Set(Metadb.methods.map { $0.name }) == Set(interface.methods.keys))
        #expect(Metadb.methods.allSatisfy { $0.qualifiedName == "io.amp.Metadb.\($0.name)" })
    }

    @Test("parameters and replies encode exactly to the IDL's fields and types, and decode back", arguments: Metadb.methods.map { $0.name })
    func methodTypes(name: String) throws {
        let method = try #require(Metadb.methods.first { $0.name == name })
        let idl = try #require(interface.methods[name])
        let (parameters, reply) = try #require(Self.samples(method))
        #expect(interface.invalidParameter(parameters, fields: idl.input) == nil, "parameters of \(name): \(parameters)")
        #expect(interface.invalidParameter(reply, fields: idl.output) == nil, "reply of \(name): \(reply)")
        #expect(covers(.object(parameters), .structure(idl.input), path: name).isEmpty, "\(covers(.object(parameters), .structure(idl.input), path: name))")
        #expect(covers(.object(reply), .structure(idl.output), path: name).isEmpty, "\(covers(.object(reply), .structure(idl.output), path: name))")
    }

    @Test("a status without optionals is still valid, and both round-trip")
    func statusRoundTrip() throws {
        let d = JSONValueDecoder(), e = JSONValueEncoder()
        let status = try #require(interface.types["Status"])
        for s in [Self.fullStatus, Self.bareStatus] {
            let encoded = try e.encode(s)
            #expect(interface.conforms(encoded, to: status), "\(encoded)")
            #expect(try d.decode(MetadbStatus.self, from: encoded) == s)
        }
        #expect(Set(MetadbStatus.State.allCases.map(\.rawValue)) == Set(interface.types["State"].flatMap {
            if case .enumeration(let c) = $0 { return c } else { return nil }
        } ?? []))
    }

    @Test("every error: the name is in the IDL, its parameters match, and it maps back")
    func errors() throws {
        let all: [MetadbError] = [
            .notReady(state: "starting", phase: "x"), .databaseExists(name: "a"), .noSuchDatabase(name: "a"),
            .invalidDatabaseName(name: "A", reason: "r"), .protectedDatabase(name: "postgres"),
            .databaseInUse(name: "a", connections: 2, sessions: ["PID 1 (user u, psql, since t)"]), .databaseInUse(name: "a", connections: 1, sessions: []),
            .noSuchSnapshot(name: "s"), .snapshotExists(name: "s"), .snapshotIncompatible(name: "s", snapshotVersion: "15", clusterVersion: "18"), .snapshotFailed(message: "m"), .queryFailed(message: "m", sqlstate: "42P01"), .queryFailed(message: "m", sqlstate: nil),
            .backupFailed(message: "m"), .notRestorable(message: "m"), .replicationFailed(message: "m"),
        ]
        #expect(Set(all.map(\.name)) == Set(interface.errors.keys))
        #expect(Set(MetadbError.names) == Set(interface.errors.keys))
        for error in all {
            let wire = error.varlinkError
            let fields = try #require(interface.errors[error.name])
            #expect(wire.name == "io.amp.Metadb.\(error.name)")
            #expect(interface.invalidParameter(wire.parameters, fields: fields) == nil, "\(wire)")
            #expect(MetadbError(wire) == error)
        }
        #expect(MetadbError(VarlinkError("io.amp.Metadb.NotReady")) == nil, "missing parameters: not that error")
        #expect(MetadbError(.permissionDenied) == nil)
    }

    @Test("calls decode to the typed enum; bad parameters are InvalidParameter naming them")
    func calls() throws {
        #expect(try MetadbCall(VarlinkCall(method: "io.amp.Metadb.GetStatus")) == .getStatus)
        #expect(try MetadbCall(VarlinkCall(method: "io.amp.Metadb.DropDatabase", parameters: ["name": .string("a")]))
            == .dropDatabase(.init(name: "a", force: nil)))
        #expect(throws: VarlinkError.invalidParameter("name")) {
            try MetadbCall(VarlinkCall(method: "io.amp.Metadb.CreateDatabase", parameters: ["name": .int(5)]))
        }
        #expect(throws: VarlinkError.methodNotImplemented("io.amp.Metadb.Nope")) { try MetadbCall(VarlinkCall(method: "io.amp.Metadb.Nope")) }
    }

    @Test("JSON coding: ints are checked, optionals omitted, maps are objects, paths named")
    func coding() throws {
        struct T: Codable, Equatable { var a: Int32; var b: Double?; var c: [String: [Int]]; var d: [Bool] }
        let e = JSONValueEncoder(), d = JSONValueDecoder()
        let v = T(a: 7, b: nil, c: ["x": [1, 2]], d: [true])
        let json = try e.encode(v)
        #expect(json == .object(["a": .int(7), "c": .object(["x": .array([.int(1), .int(2)])]), "d": .array([.bool(true)])]))
        #expect(try d.decode(T.self, from: json) == v)
        #expect(throws: JSONCodingError.self) { try d.decode(T.self, from: .object(["a": .int(1 << 40), "c": .object([:]), "d": .array([])])) }
        do {
            _ = try d.decode(T.self, from: .object(["a": .int(1), "c": .object(["x": .array([.string("no")])]), "d": .array([])]))
            Issue.record("decoded a string as an int")
        } catch {
            #expect(error.path == "c.x[0]", "\(error)")
        }
        #expect(try d.decode(Double.self, from: .int(3)) == 3, "a JSON number without a fraction is still a float")
    }
}

@Suite("connection URLs name another database")
struct MetadbURLTests {
    @Test func swapsThePathOnly() {
        #expect(Metadb.url("postgresql:///postgres?host=%2Ftmp&port=5433", database: "shop") == "postgresql:///shop?host=%2Ftmp&port=5433")
        #expect(Metadb.url("postgresql://app@db:5432/app?sslmode=require", database: "shop") == "postgresql://app@db:5432/shop?sslmode=require")
        #expect(Metadb.url("postgresql://app@db:5432", database: "shop") == "postgresql://app@db:5432/shop")
        #expect(Metadb.url("not a url", database: "shop") == "not a url")
    }
}

@Suite("GetHistory's direct JSON (pure)")
struct HistoryJSONTests {
    @Test("a sample's direct JSON has every coded field and decodes back to the same sample")
    func directEncodingMatchesCodable() throws {
        var sample = MetadbHistorySample(time: 1796439235.5, committed: 45413, rolledBack: 1, rowsRead: 1466072.5, rowsWritten: 396653, blocksHit: 915785,
                                         blocksRead: 8067, walBytes: 65401560, databaseBytes: 48160618, activeConnections: 1, idleConnections: 2,
                                         idleInTransactionConnections: 3, restarts: 4, state: "recovering")
        sample.checkpoints = 12
        guard case .object(let object) = sample.jsonValue else { Issue.record("not an object"); return }
        #expect(object.keys == ["time", "committed", "rolled_back", "rows_read", "rows_written", "blocks_hit", "blocks_read", "wal_bytes", "database_bytes",
                                "active_connections", "idle_connections", "idle_in_transaction_connections", "checkpoints", "restarts", "state"])
        #expect(try JSONValueDecoder().decode(MetadbHistorySample.self, from: sample.jsonValue) == sample)
        let reply = Metadb.GetHistory.Reply(samples: [sample, sample], intervalSeconds: 5)
        let encoded = try Metadb.GetHistory.encode(reply)
        #expect(try JSONValueDecoder().decode(Metadb.GetHistory.Reply.self, from: encoded) == reply)
        #expect(try JSONParser.parse(JSONValue.object(encoded).serialized) == .object(encoded))
    }
}
