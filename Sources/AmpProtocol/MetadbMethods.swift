import Varlink

/// A method of `io.amp.Metadb`.
public protocol MetadbMethod: VarlinkMethod {}

extension MetadbMethod {
    public static var interface: String { Metadb.interfaceName }
}

extension Metadb {
    /// `GetStatus() -> (status: Status)`: the current status.
    public enum GetStatus: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var status: MetadbStatus
            public init(status: MetadbStatus) { self.status = status }
        }
        public static let name = "GetStatus"
    }

    /// `GetConnection() -> (url, socket_dir, port, database, user, environment)`.
    public enum GetConnection: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var url: String
            public var socketDirectory: String
            public var port: Int
            public var database: String
            public var user: String
            /// libpq variables: PGHOST, PGPORT, PGDATABASE, DATABASE_URL (and PGUSER).
            public var environment: [String: String]
            /// The TCP listener (`HOST:PORT`), when enabled.
            public var listen: String?
            public var tls: Bool?
            /// The pool's socket port (in ``socketDirectory``) and TCP listener, when the pool is on.
            public var poolPort: Int?
            public var poolListen: String?

            public init(url: String, socketDirectory: String, port: Int, database: String, user: String, environment: [String: String],
                        listen: String? = nil, tls: Bool? = nil, poolPort: Int? = nil, poolListen: String? = nil) {
                self.poolPort = poolPort
                self.poolListen = poolListen
                self.listen = listen
                self.tls = tls
                self.url = url
                self.socketDirectory = socketDirectory
                self.port = port
                self.database = database
                self.user = user
                self.environment = environment
            }

            enum CodingKeys: String, CodingKey {
                case url, socketDirectory = "socket_dir", port, database, user, environment, listen, tls, poolPort = "pool_port", poolListen = "pool_listen"
            }
        }
        public static let name = "GetConnection"
    }

    /// `WatchStatus() -> (status: Status)` with `more`: the status, then one reply per change.
    public enum WatchStatus: MetadbMethod {
        public typealias Parameters = NoParameters
        public typealias Reply = GetStatus.Reply
        public static let name = "WatchStatus"
    }

    /// `ListDatabases() -> (databases: []Database)`.
    public enum ListDatabases: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var databases: [MetadbDatabase]
            public init(databases: [MetadbDatabase]) { self.databases = databases }
        }
        public static let name = "ListDatabases"
    }

    /// `CreateDatabase(name, template: ?string, force: ?bool) -> (database: Database)`.
    public enum CreateDatabase: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String
            /// Clone this database instead of template1.
            public var template: String?
            /// End the template's other sessions first.
            public var force: Bool?
            public init(name: String, template: String? = nil, force: Bool? = nil) {
                self.name = name
                self.template = template
                self.force = force
            }
        }
        public struct Reply: Codable, Sendable, Equatable {
            public var database: MetadbDatabase
            public init(database: MetadbDatabase) { self.database = database }
        }
        public static let name = "CreateDatabase"
    }

    /// `DropDatabase(name, force: ?bool) -> ()`.
    public enum DropDatabase: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String
            public var force: Bool?
            public init(name: String, force: Bool? = nil) {
                self.name = name
                self.force = force
            }
        }
        public typealias Reply = NoParameters
        public static let name = "DropDatabase"
    }

    /// `CreateSnapshot(name: ?string) -> (snapshot: Snapshot)`.
    public enum CreateSnapshot: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String?
            public init(name: String? = nil) { self.name = name }
        }
        public struct Reply: Codable, Sendable, Equatable {
            public var snapshot: MetadbSnapshot
            public init(snapshot: MetadbSnapshot) { self.snapshot = snapshot }
        }
        public static let name = "CreateSnapshot"
    }

    /// `ListSnapshots() -> (snapshots: []Snapshot)`.
    public enum ListSnapshots: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var snapshots: [MetadbSnapshot]
            public init(snapshots: [MetadbSnapshot]) { self.snapshots = snapshots }
        }
        public static let name = "ListSnapshots"
    }

    /// `RestoreSnapshot(name: string) -> ()`.
    public enum RestoreSnapshot: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String
            public init(name: String) { self.name = name }
        }
        public typealias Reply = NoParameters
        public static let name = "RestoreSnapshot"
    }

    /// `DeleteSnapshot(name: string) -> ()`.
    public enum DeleteSnapshot: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String
            public init(name: String) { self.name = name }
        }
        public typealias Reply = NoParameters
        public static let name = "DeleteSnapshot"
    }

    /// `GetTopStatements(database: ?string, limit: ?int) -> (statements: []Statement)`.
    public enum GetTopStatements: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var database: String?
            public var limit: Int?
            public init(database: String? = nil, limit: Int? = nil) {
                self.database = database
                self.limit = limit
            }
        }
        public struct Reply: Codable, Sendable, Equatable {
            public var statements: [MetadbStatement]
            public init(statements: [MetadbStatement]) { self.statements = statements }
        }
        public static let name = "GetTopStatements"
    }

    /// `ResetStatementStatistics() -> ()`.
    public enum ResetStatementStatistics: MetadbMethod {
        public typealias Parameters = NoParameters
        public typealias Reply = NoParameters
        public static let name = "ResetStatementStatistics"
    }

    /// `ResetCluster(seed: ?bool) -> ()`.
    public enum ResetCluster: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var seed: Bool?
            public init(seed: Bool? = nil) { self.seed = seed }
        }
        public typealias Reply = NoParameters
        public static let name = "ResetCluster"
    }

    /// `AcquireTestDatabase(template: ?string) -> (database, url, environment, pooled)`, with more.
    public enum AcquireTestDatabase: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var template: String?
            public init(template: String? = nil) { self.template = template }
        }
        public struct Reply: Codable, Sendable, Equatable {
            public var database: String
            public var url: String
            /// libpq variables and DATABASE_URL for the test database.
            public var environment: [String: String]
            /// Whether it was made ahead of time (no CREATE DATABASE while the caller waited).
            public var pooled: Bool
            public init(database: String, url: String, environment: [String: String], pooled: Bool) {
                self.database = database
                self.url = url
                self.environment = environment
                self.pooled = pooled
            }
        }
        public static let name = "AcquireTestDatabase"
    }

    /// `ReleaseTestDatabase(name: string) -> ()`.
    public enum ReleaseTestDatabase: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String
            public init(name: String) { self.name = name }
        }
        public typealias Reply = NoParameters
        public static let name = "ReleaseTestDatabase"
    }

    /// Every method, for the check of the types against the IDL.
    public static let methods: [any MetadbMethod.Type] = [
        GetStatus.self, GetConnection.self, WatchStatus.self, ListDatabases.self, CreateDatabase.self, DropDatabase.self,
        CreateSnapshot.self, ListSnapshots.self, RestoreSnapshot.self, DeleteSnapshot.self,
        AcquireTestDatabase.self, ReleaseTestDatabase.self, ResetCluster.self, GetTopStatements.self, ResetStatementStatistics.self,
        ListBackups.self, CreateBackup.self, VerifyBackup.self, CreateRestorePoint.self, RestoreToTime.self, GetMetrics.self, GetHistory.self, Promote.self,
    ]

    /// Snapshot names: the same rule as database names (1 to 63 of a-z, 0-9, _ and -).
    public static func snapshotNameProblem(_ name: String) -> String? { databaseNameProblem(name) }
}

extension Metadb.GetConnection.Reply {
    /// The same server through the pool (`ampctl url --pooled`): the pool's port in the URL
    /// and `PGPORT`, and its TCP listener as ``listen``; nil when the pool is off.
    public func pooled() -> Metadb.GetConnection.Reply? {
        guard let poolPort else { return nil }
        var copy = self
        copy.port = poolPort
        copy.url = Metadb.url(url, port: poolPort)
        copy.environment["PGPORT"] = "\(poolPort)"
        if copy.environment["DATABASE_URL"] != nil { copy.environment["DATABASE_URL"] = copy.url }
        copy.listen = poolListen
        return copy
    }

    /// The same server, another database: URL, `PGDATABASE` and `DATABASE_URL` follow.
    public func forDatabase(_ name: String) -> Metadb.GetConnection.Reply {
        var copy = self
        copy.url = Metadb.url(url, database: name)
        copy.database = name
        copy.environment["PGDATABASE"] = name
        copy.environment["DATABASE_URL"] = copy.url
        return copy
    }
}

extension Metadb {
    /// A socket URL (`postgresql:///DB?host=DIR[&port=P]…`) with port `port` instead.
    public static func url(_ url: String, port: Int) -> String {
        let parts = url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var items = parts.count > 1 ? parts[1].split(separator: "&").map(String.init) : []
        items.removeAll { $0.hasPrefix("port=") }
        let at = items.firstIndex { $0.hasPrefix("host=") }.map { $0 + 1 } ?? items.count
        items.insert("port=\(port)", at: at)
        return String(parts[0]) + "?" + items.joined(separator: "&")
    }

    /// `url` (`postgresql://[AUTHORITY]/DB[?…]`) naming database `name` instead (a name that
    /// passed ``databaseNameProblem(_:)``, or `postgres`: nothing to encode).
    public static func url(_ url: String, database name: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let tail = rest[authorityEnd...]
        let path = tail.prefix { $0 != "?" }
        return String(url[..<authorityEnd]) + "/" + name + tail.dropFirst(path.count)
    }
}

/// A call of `io.amp.Metadb`, decoded: what ampd dispatches on.
extension Metadb {
    /// `ListBackups() -> (backups: []Backup, archive: Archive)`.
    public enum ListBackups: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var backups: [MetadbBackup]
            public var archive: MetadbArchive
            public init(backups: [MetadbBackup], archive: MetadbArchive) {
                self.backups = backups
                self.archive = archive
            }
        }
        public static let name = "ListBackups"
    }

    /// `CreateBackup() -> (backup: Backup)`.
    public enum CreateBackup: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var backup: MetadbBackup
            public init(backup: MetadbBackup) { self.backup = backup }
        }
        public static let name = "CreateBackup"
    }

    /// `VerifyBackup() -> (backup: string, checks: []string)`.
    public enum VerifyBackup: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var backup: String
            public var checks: [String]
            public init(backup: String, checks: [String]) {
                self.backup = backup
                self.checks = checks
            }
        }
        public static let name = "VerifyBackup"
    }

    /// `CreateRestorePoint(name) -> (lsn, time)`.
    public enum CreateRestorePoint: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var name: String
            public init(name: String) { self.name = name }
        }
        public struct Reply: Codable, Sendable, Equatable {
            public var lsn: String
            public var time: String
            public init(lsn: String, time: String) {
                self.lsn = lsn
                self.time = time
            }
        }
        public static let name = "CreateRestorePoint"
    }

    /// `Promote() -> (status)`.
    public enum Promote: MetadbMethod {
        public typealias Parameters = NoParameters
        public typealias Reply = GetStatus.Reply
        public static let name = "Promote"
    }

    /// `RestoreToTime(target) -> (restored: Restored)`.
    public enum RestoreToTime: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var target: String
            public init(target: String) { self.target = target }
        }
        public struct Reply: Codable, Sendable, Equatable {
            public var restored: MetadbRestored
            public init(restored: MetadbRestored) { self.restored = restored }
        }
        public static let name = "RestoreToTime"
    }

    /// `GetMetrics() -> (text: string)`.
    public enum GetMetrics: MetadbMethod {
        public typealias Parameters = NoParameters
        public struct Reply: Codable, Sendable, Equatable {
            public var text: String
            public init(text: String) { self.text = text }
        }
        public static let name = "GetMetrics"
    }

    /// `GetHistory(since: ?float) -> (samples: []HistorySample, interval_seconds: float)`.
    public enum GetHistory: MetadbMethod {
        public struct Parameters: Codable, Sendable, Equatable {
            public var since: Double?
            public init(since: Double?) { self.since = since }
        }
        /// Built directly as JSON (``JSONValueRepresentable``): an hour is 720 samples.
        public struct Reply: Codable, Sendable, Equatable, JSONValueRepresentable {
            public var samples: [MetadbHistorySample]
            public var intervalSeconds: Double
            public var jsonValue: JSONValue {
                .object(JSONObject(uniqueKeys: [
                    (CodingKeys.samples.stringValue, .array(samples.map(\.jsonValue))), (CodingKeys.intervalSeconds.stringValue, .float(intervalSeconds)),
                ]))
            }
            public init(samples: [MetadbHistorySample], intervalSeconds: Double) {
                self.samples = samples
                self.intervalSeconds = intervalSeconds
            }
            enum CodingKeys: String, CodingKey { case samples, intervalSeconds = "interval_seconds" }
        }
        public static let name = "GetHistory"
    }
}

public enum MetadbCall: Sendable, Equatable {
    case getStatus
    case getConnection
    case watchStatus
    case listDatabases
    case createDatabase(Metadb.CreateDatabase.Parameters)
    case dropDatabase(Metadb.DropDatabase.Parameters)
    case createSnapshot(Metadb.CreateSnapshot.Parameters)
    case listSnapshots
    case restoreSnapshot(Metadb.RestoreSnapshot.Parameters)
    case deleteSnapshot(Metadb.DeleteSnapshot.Parameters)
    case acquireTestDatabase(Metadb.AcquireTestDatabase.Parameters)
    case releaseTestDatabase(Metadb.ReleaseTestDatabase.Parameters)
    case resetCluster(Metadb.ResetCluster.Parameters)
    case getTopStatements(Metadb.GetTopStatements.Parameters)
    case resetStatementStatistics
    case listBackups
    case createBackup
    case verifyBackup
    case createRestorePoint(Metadb.CreateRestorePoint.Parameters)
    case restoreToTime(Metadb.RestoreToTime.Parameters)
    case getMetrics
    case getHistory(Metadb.GetHistory.Parameters)
    case promote

    /// Decodes `call` (already checked against the IDL by the connection).
    public init(_ call: VarlinkCall) throws(VarlinkError) {
        switch call.method {
        case Metadb.GetStatus.qualifiedName: self = .getStatus
        case Metadb.GetConnection.qualifiedName: self = .getConnection
        case Metadb.WatchStatus.qualifiedName: self = .watchStatus
        case Metadb.ListDatabases.qualifiedName: self = .listDatabases
        case Metadb.CreateDatabase.qualifiedName: self = .createDatabase(try Metadb.CreateDatabase.parameters(of: call))
        case Metadb.DropDatabase.qualifiedName: self = .dropDatabase(try Metadb.DropDatabase.parameters(of: call))
        case Metadb.CreateSnapshot.qualifiedName: self = .createSnapshot(try Metadb.CreateSnapshot.parameters(of: call))
        case Metadb.ListSnapshots.qualifiedName: self = .listSnapshots
        case Metadb.RestoreSnapshot.qualifiedName: self = .restoreSnapshot(try Metadb.RestoreSnapshot.parameters(of: call))
        case Metadb.DeleteSnapshot.qualifiedName: self = .deleteSnapshot(try Metadb.DeleteSnapshot.parameters(of: call))
        case Metadb.AcquireTestDatabase.qualifiedName: self = .acquireTestDatabase(try Metadb.AcquireTestDatabase.parameters(of: call))
        case Metadb.ReleaseTestDatabase.qualifiedName: self = .releaseTestDatabase(try Metadb.ReleaseTestDatabase.parameters(of: call))
        case Metadb.ResetCluster.qualifiedName: self = .resetCluster(try Metadb.ResetCluster.parameters(of: call))
        case Metadb.GetTopStatements.qualifiedName: self = .getTopStatements(try Metadb.GetTopStatements.parameters(of: call))
        case Metadb.ResetStatementStatistics.qualifiedName: self = .resetStatementStatistics
        case Metadb.ListBackups.qualifiedName: self = .listBackups
        case Metadb.CreateBackup.qualifiedName: self = .createBackup
        case Metadb.VerifyBackup.qualifiedName: self = .verifyBackup
        case Metadb.CreateRestorePoint.qualifiedName: self = .createRestorePoint(try Metadb.CreateRestorePoint.parameters(of: call))
        case Metadb.RestoreToTime.qualifiedName: self = .restoreToTime(try Metadb.RestoreToTime.parameters(of: call))
        case Metadb.GetMetrics.qualifiedName: self = .getMetrics
        case Metadb.GetHistory.qualifiedName: self = .getHistory(try Metadb.GetHistory.parameters(of: call))
        case Metadb.Promote.qualifiedName: self = .promote
        default: throw .methodNotImplemented(call.method)
        }
    }
}

/// The errors of `io.amp.Metadb`: the one place their names and parameters are written.
public enum MetadbError: Error, Sendable, Equatable, CustomStringConvertible {
    /// PostgreSQL is not ready (starting, stopping or failed).
    case notReady(state: String, phase: String)
    case databaseExists(name: String)
    case noSuchDatabase(name: String)
    /// 1 to 63 of a-z, 0-9, _ and -, starting with a letter or _.
    case invalidDatabaseName(name: String, reason: String)
    /// postgres, template0 and template1 cannot be dropped.
    case protectedDatabase(name: String)
    /// `sessions`: one line per other session (PID, user, application, since when).
    case databaseInUse(name: String, connections: Int, sessions: [String])
    case queryFailed(message: String, sqlstate: String?)
    case noSuchSnapshot(name: String)
    case snapshotExists(name: String)
    case snapshotIncompatible(name: String, snapshotVersion: String, clusterVersion: String)
    case snapshotFailed(message: String)
    case backupFailed(message: String)
    case notRestorable(message: String)
    case replicationFailed(message: String)

    /// The unqualified error names, as in the IDL.
    public static let names = [
        "NotReady", "DatabaseExists", "NoSuchDatabase", "InvalidDatabaseName", "ProtectedDatabase", "DatabaseInUse", "QueryFailed",
        "NoSuchSnapshot", "SnapshotExists", "SnapshotIncompatible", "SnapshotFailed", "BackupFailed", "NotRestorable",
        "ReplicationFailed",
    ]

    /// The error's name within the interface.
    public var name: String {
        switch self {
        case .notReady: return "NotReady"
        case .databaseExists: return "DatabaseExists"
        case .noSuchDatabase: return "NoSuchDatabase"
        case .invalidDatabaseName: return "InvalidDatabaseName"
        case .protectedDatabase: return "ProtectedDatabase"
        case .databaseInUse: return "DatabaseInUse"
        case .queryFailed: return "QueryFailed"
        case .noSuchSnapshot: return "NoSuchSnapshot"
        case .snapshotExists: return "SnapshotExists"
        case .snapshotIncompatible: return "SnapshotIncompatible"
        case .snapshotFailed: return "SnapshotFailed"
        case .backupFailed: return "BackupFailed"
        case .notRestorable: return "NotRestorable"
        case .replicationFailed: return "ReplicationFailed"
        }
    }

    /// The error as it goes on the wire.
    public var varlinkError: VarlinkError {
        let parameters: JSONObject
        switch self {
        case .notReady(let state, let phase): parameters = ["state": .string(state), "phase": .string(phase)]
        case .databaseExists(let name), .noSuchDatabase(let name), .protectedDatabase(let name): parameters = ["name": .string(name)]
        case .invalidDatabaseName(let name, let reason): parameters = ["name": .string(name), "reason": .string(reason)]
        case .databaseInUse(let name, let connections, let sessions):
            parameters = ["name": .string(name), "connections": .int(Int64(connections)), "sessions": .array(sessions.map { .string($0) })]
        case .queryFailed(let message, let sqlstate):
            var p: JSONObject = ["message": .string(message)]
            if let sqlstate { p["sqlstate"] = .string(sqlstate) }
            parameters = p
        case .noSuchSnapshot(let name), .snapshotExists(let name): parameters = ["name": .string(name)]
        case .snapshotIncompatible(let name, let snapshot, let cluster):
            parameters = ["name": .string(name), "snapshot_version": .string(snapshot), "cluster_version": .string(cluster)]
        case .snapshotFailed(let message), .backupFailed(let message), .notRestorable(let message), .replicationFailed(let message):
            parameters = ["message": .string(message)]
        }
        return VarlinkError(Metadb.interfaceName + "." + name, parameters)
    }

    /// The error a reply carries, when it is one of this interface's (with its parameters).
    public init?(_ error: VarlinkError) {
        let prefix = Metadb.interfaceName + "."
        guard error.name.hasPrefix(prefix) else { return nil }
        let p = error.parameters
        func s(_ key: String) -> String? { p[key]?.stringValue }
        switch String(error.name.dropFirst(prefix.count)) {
        case "NotReady":
            guard let state = s("state"), let phase = s("phase") else { return nil }
            self = .notReady(state: state, phase: phase)
        case "DatabaseExists": guard let n = s("name") else { return nil }; self = .databaseExists(name: n)
        case "NoSuchDatabase": guard let n = s("name") else { return nil }; self = .noSuchDatabase(name: n)
        case "ProtectedDatabase": guard let n = s("name") else { return nil }; self = .protectedDatabase(name: n)
        case "InvalidDatabaseName":
            guard let n = s("name"), let r = s("reason") else { return nil }
            self = .invalidDatabaseName(name: n, reason: r)
        case "DatabaseInUse":
            guard let n = s("name"), let c = p["connections"]?.intValue, let count = Int(exactly: c) else { return nil }
            self = .databaseInUse(name: n, connections: count, sessions: p["sessions"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        case "QueryFailed":
            guard let m = s("message") else { return nil }
            self = .queryFailed(message: m, sqlstate: s("sqlstate"))
        case "NoSuchSnapshot": guard let n = s("name") else { return nil }; self = .noSuchSnapshot(name: n)
        case "SnapshotExists": guard let n = s("name") else { return nil }; self = .snapshotExists(name: n)
        case "SnapshotIncompatible":
            guard let n = s("name"), let a = s("snapshot_version"), let b = s("cluster_version") else { return nil }
            self = .snapshotIncompatible(name: n, snapshotVersion: a, clusterVersion: b)
        case "SnapshotFailed": guard let m = s("message") else { return nil }; self = .snapshotFailed(message: m)
        case "BackupFailed": guard let m = s("message") else { return nil }; self = .backupFailed(message: m)
        case "NotRestorable": guard let m = s("message") else { return nil }; self = .notRestorable(message: m)
        case "ReplicationFailed": guard let m = s("message") else { return nil }; self = .replicationFailed(message: m)
        default: return nil
        }
    }

    public var description: String { varlinkError.description }
}
