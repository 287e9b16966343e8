#if canImport(Glibc)
import Glibc
#endif
import SystemSupport
import Varlink

/// The amp version: of ampd, ampctl and the interface they share.
public let ampVersion = "0.1.0"

/// The `io.amp.Metadb` varlink interface: what `ampd` serves and `ampctl` calls.
public enum Metadb {
    public static let interfaceName = "io.amp.Metadb"

    /// The interface description (varlink IDL), served by `GetInterfaceDescription`.
    public static let idl = """
        # The managed PostgreSQL of one amp dir, served by ampd at
        # $XDG_RUNTIME_DIR/amp/NAME/io.amp.Metadb (NAME: the unit instance or registry name).
        interface io.amp.Metadb

        # Where the service is.
        type State (starting, ready, stopping, failed, external)

        type Status (
          # starting, ready, stopping, failed; external: a server ampd does not run
          # ([postgres] url), reachable when healthy.
          state: State,
          # What is happening, in words (the systemd status text).
          phase: string,
          project: string,
          ampd_pid: int,
          postmaster_pid: ?int,
          # SHOW server_version.
          version: ?string,
          amp_dir: string,
          data_dir: string,
          socket_dir: ?string,
          url: ?string,
          # Seconds since PostgreSQL became ready.
          uptime_seconds: ?float,
          # Sum of pg_database_size over all databases (measured at most every 2 s).
          database_size_bytes: ?int,
          # Client backends (pg_stat_activity), ampd's own kept session not counted.
          connections: ?int,
          # Restarts by the service manager since the unit was started.
          restarts: int,
          # Whether the last health check passed.
          healthy: ?bool,
          last_error: ?string,
          # The local cluster's TCP listener, HOST:PORT ([postgres] listen), when enabled.
          listen: ?string,
          # Whether TCP connections use TLS (listen), or the external server asks for it.
          tls: ?bool,
          # The external server, HOST:PORT (state external).
          server: ?string,
          # The continuous archive ([backup]): streaming, starting, stopped: WHY, off.
          archive: ?string,
          # Seconds the archive is behind the server's WAL (0: caught up).
          archive_lag_seconds: ?float,
          # What a restore can reach (UTC, 2026-12-04T22:30:00Z).
          restorable_from: ?string,
          restorable_to: ?string,
          # Why the archive cannot reach the newest WAL (a gap, no base backup yet).
          archive_problem: ?string,
          # A long operation under way and how far it got (a restore's replay).
          operation: ?string,
          # The connection pool ([pool] enabled), when on.
          pool: ?Pool,
          # primary or standby (a hot standby of another server: ampctl replica).
          role: ?string,
          # Streaming replication: a standby's receiver and lag, a primary's standbys.
          replication: ?Replication
        )

        # A standby's WAL receiver and lag, or a primary's standbys (read with the status).
        type Replication (
          # A standby: the receiver's state (streaming, waiting, …), its primary, its slot.
          receiver: ?string,
          upstream: ?string,
          slot: ?string,
          # A standby: bytes received but not replayed, seconds replay is behind (0: caught up).
          lag_bytes: ?int,
          lag_seconds: ?float,
          # A primary: each standby (pg_stat_replication).
          standbys: []Standby
        )

        type Standby (
          name: string,
          state: string,
          lag_bytes: ?int,
          lag_seconds: ?float
        )

        # PgBouncer in front of the cluster, and its figures (SHOW POOLS, every 5 s).
        type Pool (
          # running, starting, failed: WHY; restarting in N s.
          state: string,
          pid: ?int,
          mode: string,
          # Server connections per database and user (default_pool_size), and clients at most.
          size: int,
          max_clients: int,
          # The pool's socket (in socket_dir), its port, and TCP listener (HOST:PORT), when set.
          socket: string,
          port: ?int,
          listen: ?string,
          clients_active: int,
          clients_waiting: int,
          servers_active: int,
          servers_idle: int,
          # Seconds the oldest waiting client has waited.
          max_wait_seconds: float,
          # Restarts of PgBouncer by ampd.
          restarts: int
        )

        # A base backup in the archive.
        type Backup (
          id: string,
          # When it began and when it was consistent, UTC.
          started: string,
          finished: string,
          timeline: int,
          start_lsn: string,
          end_lsn: string,
          postgres_version: string,
          size_bytes: int,
          # When `ampctl backup verify` last found it sound, UTC.
          verified: ?string,
          # The backup it is incremental on (PostgreSQL 17+, or pgBackRest's), null for a full one.
          parent: ?string
        )

        # The archive: where it is and what it can restore.
        type Archive (
          state: string,
          target: string,
          size_bytes: int,
          lag_seconds: ?float,
          restorable_from: ?string,
          restorable_to: ?string,
          problem: ?string,
          # The named restore points, oldest first (NAME at TIME).
          restore_points: []string
        )

        # One sample of the project's history (every 5 s for the last hour, one a minute for
        # the day before): cumulative counters (rates are differences of neighbours) and levels.
        type HistorySample (
          # Seconds since the epoch.
          time: float,
          committed: float,
          rolled_back: float,
          rows_read: float,
          rows_written: float,
          blocks_hit: float,
          blocks_read: float,
          wal_bytes: float,
          database_bytes: float,
          active_connections: int,
          idle_connections: int,
          idle_in_transaction_connections: int,
          # Checkpoints since the statistics were reset (timed and requested).
          checkpoints: float,
          restarts: int,
          state: string
        )

        # What a restore to a moment reached.
        type Restored (
          backup: string,
          # The last transaction it holds, UTC.
          reached_time: ?string,
          reached_lsn: ?string,
          replayed_bytes: int,
          # Replay ended before the archive's end: which WAL was damaged or missing.
          stopped_early: ?string
        )

        type Database (name: string, size_bytes: int, owner: string)

        # One normalised statement from pg_stat_statements (times in milliseconds).
        type Statement (
          database: string,
          query: string,
          calls: int,
          total_ms: float,
          mean_ms: float,
          rows: int
        )

        # A copy of the whole cluster in .amp/snapshots/NAME, taken from a cleanly stopped server.
        type Snapshot (
          name: string,
          # When it was taken, UTC (2026-11-26T04:30:00Z).
          created: string,
          # The PostgreSQL major version of the cluster (PG_VERSION).
          postgres_version: string,
          size_bytes: int,
          # HEAD of the project, when the project is a git work tree.
          git_commit: ?string
        )

        # The current status.
        method GetStatus() -> (status: Status)

        # How to connect: URL, socket directory, and libpq environment variables.
        method GetConnection() -> (
          url: string,
          socket_dir: string,
          port: int,
          database: string,
          user: string,
          environment: [string]string,
          # The TCP listener, HOST:PORT, when [postgres] listen is set (password: ampctl url --tcp).
          listen: ?string,
          tls: ?bool,
          # The pool ([pool] enabled): its socket's port in socket_dir, and its TCP listener.
          pool_port: ?int,
          pool_listen: ?string
        )

        # The current status, then one reply per change (call with more).
        method WatchStatus() -> (status: Status)

        method ListDatabases() -> (databases: []Database)

        # Creates a database owned by the connecting role; with template, a clone of that
        # database (CREATE DATABASE … TEMPLATE); force ends the template's other sessions first.
        method CreateDatabase(name: string, template: ?string, force: ?bool) -> (database: Database)

        # Drops a database; force terminates its connections first.
        method DropDatabase(name: string, force: ?bool) -> ()

        # Takes a snapshot (default name: the time); PostgreSQL stops for the copy (a reflink
        # where the file system has them) and starts again; connections are ended.
        method CreateSnapshot(name: ?string) -> (snapshot: Snapshot)

        method ListSnapshots() -> (snapshots: []Snapshot)

        # Replaces the cluster with a snapshot; the current cluster is kept until the restored
        # one is up. Connections are ended.
        method RestoreSnapshot(name: string) -> ()

        method DeleteSnapshot(name: string) -> ()

        # The statements taking the most total time (pg_stat_statements), optionally of one
        # database; limit defaults to 20 (at most 1000).
        method GetTopStatements(database: ?string, limit: ?int) -> (statements: []Statement)

        # pg_stat_statements_reset(): the statistics start again.
        method ResetStatementStatistics() -> ()

        # Replaces the cluster with a new one (initdb or the cached template), with the seed
        # scripts when seed is true; the current one is kept until the new one is up (and seeded).
        method ResetCluster(seed: ?bool) -> ()

        # A fresh database cloned from template (default: the default database) for as long as
        # this call lasts: call with more; the first reply names it, and it is dropped when the
        # connection closes (or on ReleaseTestDatabase). pooled: it was made ahead of time.
        method AcquireTestDatabase(template: ?string) -> (
          database: string,
          url: string,
          environment: [string]string,
          pooled: bool
        )

        # Drops a test database handed out by AcquireTestDatabase now.
        method ReleaseTestDatabase(name: string) -> ()

        # The base backups and what the archive can restore.
        method ListBackups() -> (backups: []Backup, archive: Archive)

        # Takes a base backup now (online; checked with pg_verifybackup).
        method CreateBackup() -> (backup: Backup)

        # Restores the newest base backup and the WAL after it into a scratch directory, starts
        # it on a private socket, runs pg_amcheck and a query, and removes it.
        method VerifyBackup() -> (backup: string, checks: []string)

        # Names the current moment (pg_create_restore_point) for `restore --to NAME`.
        method CreateRestorePoint(name: string) -> (lsn: string, time: string)

        # Replaces the cluster with the archive's state at target (an ISO time, "N minutes ago",
        # latest, or a restore point); the current cluster is kept as a rollback copy in
        # .amp/rollback until the restored one is up, then dropped. Progress is in the status.
        method RestoreToTime(target: string) -> (restored: Restored)

        # The project's metrics in the Prometheus text format (PostgreSQL's, with
        # postgres_exporter's names, and amp's own), as [metrics] listen serves them.
        method GetMetrics() -> (text: string)

        # The history ampd keeps in memory, oldest first; since: seconds since the epoch.
        method GetHistory(since: ?float) -> (samples: []HistorySample, interval_seconds: float)

        # Promotes a hot standby to a primary (pg_promote, waiting up to 60 s): it stops
        # following its primary and takes writes. No automatic failover: the caller decides.
        method Promote() -> (status: Status)

        # PostgreSQL is not ready (starting, stopping or failed).
        error NotReady (state: string, phase: string)

        error DatabaseExists (name: string)

        error NoSuchDatabase (name: string)

        # Names: 1 to 63 of a-z, 0-9, _ and -, starting with a letter or _.
        error InvalidDatabaseName (name: string, reason: string)

        # postgres, template0 and template1 cannot be dropped.
        error ProtectedDatabase (name: string)

        # sessions: one line per other session (PID, user, application, since when).
        error DatabaseInUse (name: string, connections: int, sessions: ?[]string)

        error QueryFailed (message: string, sqlstate: ?string)

        error NoSuchSnapshot (name: string)

        error SnapshotExists (name: string)

        # A snapshot of another PostgreSQL major version than the cluster's.
        error SnapshotIncompatible (name: string, snapshot_version: string, cluster_version: string)

        # Copying, starting or removing failed; the cluster is as it was.
        error SnapshotFailed (message: string)

        # The archive is off, or a backup, verification or restore failed; the cluster is as it was.
        error BackupFailed (message: string)

        # The archive holds nothing that reaches the moment asked for (message: the range it has).
        error NotRestorable (message: string)

        # Not a standby, or the promotion did not finish; the server is as it was.
        error ReplicationFailed (message: string)

        """

    /// The parsed interface.
    public static func interface() throws(VarlinkIDLError) -> VarlinkInterface { try VarlinkInterface(parsing: idl) }

    /// The service description ampd serves.
    public static func service(version: String) throws(VarlinkIDLError) -> VarlinkServiceDescription {
        VarlinkServiceDescription(
            vendor: "amp", product: "ampd", version: version, url: "https://github.com/amp-dev/amp",
            interfaces: [try interface()], moreRequired: ["io.amp.Metadb.WatchStatus", "io.amp.Metadb.AcquireTestDatabase"])
    }

    /// Why `name` cannot be a database name, or nil.
    public static func databaseNameProblem(_ name: String) -> String? {
        guard !name.isEmpty else { return "it is empty" }
        guard name.utf8.count <= 63 else { return "it is longer than 63 bytes" }
        guard let f = name.unicodeScalars.first, ("a"..."z").contains(f) || f == "_" else {
            return "it must start with a lower-case letter or _"
        }
        guard name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }) else {
            return "only a-z, 0-9, _ and - are allowed"
        }
        return nil
    }

    /// The prefix of amp's throwaway test databases: ampd drops every database so named at
    /// its start.
    public static let testDatabasePrefix = "amp_testdb_"
    /// The suffixes (followed by the PID of the ampctl that made it) of the temporary
    /// databases of `ampctl import` and of `ampctl pull`/`push`: ampd drops those whose ampctl
    /// is gone at its start.
    public static let importSuffix = "__import_"
    public static let copySuffix = "__amp_copy_"

    /// The PID in the name of an import's or a copy's temporary database, or nil when `name`
    /// is not one.
    public static func temporaryDatabaseOwner(_ name: String) -> Int32? {
        for suffix in [importSuffix, copySuffix] {
            guard let range = name.ranges(of: suffix).last, range.lowerBound > name.startIndex else { continue }
            let digits = name[range.upperBound...]
            if !digits.isEmpty, digits.count <= 10, digits.allSatisfy(\.isNumber), let pid = Int32(digits) { return pid }
        }
        return nil
    }

    /// Why `name` is reserved for amp's own databases (and so cannot be created or imported
    /// into by hand), or nil: amp drops such databases on its own, with whatever is in them.
    public static func reservedDatabaseNameProblem(_ name: String) -> String? {
        if name.hasPrefix(testDatabasePrefix) {
            return "names starting with \(testDatabasePrefix) are amp's throwaway test databases, dropped at every start of ampd; choose another name"
        }
        if temporaryDatabaseOwner(name) != nil {
            return "names ending in \(importSuffix)N or \(copySuffix)N are amp's temporary import and copy databases, dropped when their ampctl is gone; choose another name"
        }
        return nil
    }

    /// Databases that cannot be dropped.
    public static let protectedDatabases: Set<String> = ["postgres", "template0", "template1"]

    /// The socket path of project `name`: `RUNTIME/amp/NAME/io.amp.Metadb`.
    public static func socketPath(runtimeDirectory: String, name: String) -> String {
        "\(runtimeDirectory)/amp/\(name)/\(interfaceName)"
    }

    /// Why the directories of project `name`'s socket cannot be trusted, or nil: `RUNTIME`
    /// must be a directory of this user's with mode 0700, and `RUNTIME/amp` and
    /// `RUNTIME/amp/NAME` (where they exist) directories of this user's that nobody else may
    /// write (systemd makes them 0755 for `RuntimeDirectory=`) — see
    /// ``privateDirectoryProblem(_:owner:readableByOthers:)`` — so that no other user can have
    /// put a socket of theirs in its place. ampd checks before it binds, ampctl before it
    /// connects.
    public static func socketDirectoryProblem(runtimeDirectory: String, name: String) -> String? {
        for (index, dir) in [runtimeDirectory, runtimeDirectory + "/amp", runtimeDirectory + "/amp/" + name].enumerated() {
            var st = stat()
            guard lstat(dir, &st) == 0 else { return nil }
            if let problem = privateDirectoryProblem(dir, readableByOthers: index > 0) { return problem }
        }
        return nil
    }

    /// `$XDG_RUNTIME_DIR`, else `/run/user/UID` when it exists, else `/tmp/amp-UID` (made 0700 by ampd).
    public static func runtimeDirectory(environment: [String: String]) -> String {
        if let x = environment["XDG_RUNTIME_DIR"], x.hasPrefix("/") { return x }
        let run = "/run/user/\(geteuid())"
        if access(run, W_OK) == 0 { return run }
        return "/tmp/amp-\(geteuid())"
    }
}

/// `io.amp.Metadb.Status`.
public struct MetadbStatus: Codable, Sendable, Equatable {
    /// `io.amp.Metadb.State`.
    public enum State: String, Codable, Sendable, CaseIterable { case starting, ready, stopping, failed, external }

    public var state: State
    public var phase: String
    public var project: String
    public var ampdPID: Int
    public var postmasterPID: Int?
    public var version: String?
    public var ampDir: String
    public var dataDir: String
    public var socketDir: String?
    public var url: String?
    public var uptimeSeconds: Double?
    public var databaseSizeBytes: Int64?
    public var connections: Int?
    public var restarts: Int
    public var healthy: Bool?
    public var lastError: String?
    public var listen: String?
    public var tls: Bool?
    public var server: String?
    public var archive: String?
    public var archiveLagSeconds: Double?
    public var restorableFrom: String?
    public var restorableTo: String?
    public var archiveProblem: String?
    public var operation: String?
    public var pool: MetadbPool?
    public var role: String?
    public var replication: MetadbReplication?

    public init(state: State, phase: String, project: String, ampdPID: Int, ampDir: String, dataDir: String, restarts: Int = 0) {
        self.state = state
        self.phase = phase
        self.project = project
        self.ampdPID = ampdPID
        self.ampDir = ampDir
        self.dataDir = dataDir
        self.restarts = restarts
    }

    enum CodingKeys: String, CodingKey {
        case state, phase, project, ampdPID = "ampd_pid", postmasterPID = "postmaster_pid", version, ampDir = "amp_dir"
        case dataDir = "data_dir", socketDir = "socket_dir", url, uptimeSeconds = "uptime_seconds"
        case databaseSizeBytes = "database_size_bytes", connections, restarts, healthy, lastError = "last_error"
        case listen, tls, server, archive, archiveLagSeconds = "archive_lag_seconds", restorableFrom = "restorable_from"
        case restorableTo = "restorable_to", archiveProblem = "archive_problem", operation, pool, role, replication
    }
}

/// `io.amp.Metadb.Replication`.
public struct MetadbReplication: Codable, Sendable, Equatable {
    public var receiver: String?
    public var upstream: String?
    public var slot: String?
    public var lagBytes: Int64?
    public var lagSeconds: Double?
    public var standbys: [MetadbStandby]

    public init(receiver: String? = nil, upstream: String? = nil, slot: String? = nil, lagBytes: Int64? = nil, lagSeconds: Double? = nil, standbys: [MetadbStandby] = []) {
        self.receiver = receiver
        self.upstream = upstream
        self.slot = slot
        self.lagBytes = lagBytes
        self.lagSeconds = lagSeconds
        self.standbys = standbys
    }

    enum CodingKeys: String, CodingKey {
        case receiver, upstream, slot, lagBytes = "lag_bytes", lagSeconds = "lag_seconds", standbys
    }
}

/// `io.amp.Metadb.Standby`.
public struct MetadbStandby: Codable, Sendable, Equatable {
    public var name: String
    public var state: String
    public var lagBytes: Int64?
    public var lagSeconds: Double?

    public init(name: String, state: String, lagBytes: Int64? = nil, lagSeconds: Double? = nil) {
        self.name = name
        self.state = state
        self.lagBytes = lagBytes
        self.lagSeconds = lagSeconds
    }

    enum CodingKeys: String, CodingKey {
        case name, state, lagBytes = "lag_bytes", lagSeconds = "lag_seconds"
    }
}

/// `io.amp.Metadb.Pool`: PgBouncer in front of the cluster.
public struct MetadbPool: Codable, Sendable, Equatable {
    public var state: String
    public var pid: Int?
    public var mode: String
    public var size: Int
    public var maxClients: Int
    public var socket: String
    public var port: Int?
    public var listen: String?
    public var clientsActive = 0
    public var clientsWaiting = 0
    public var serversActive = 0
    public var serversIdle = 0
    public var maxWaitSeconds = 0.0
    public var restarts = 0

    public init(state: String, mode: String, size: Int, maxClients: Int, socket: String, listen: String? = nil) {
        self.state = state
        self.mode = mode
        self.size = size
        self.maxClients = maxClients
        self.socket = socket
        self.listen = listen
    }

    enum CodingKeys: String, CodingKey {
        case state, pid, mode, size, maxClients = "max_clients", socket, port, listen, clientsActive = "clients_active", clientsWaiting = "clients_waiting"
        case serversActive = "servers_active", serversIdle = "servers_idle", maxWaitSeconds = "max_wait_seconds", restarts
    }
}

/// `io.amp.Metadb.Database`.
/// One statement's statistics (`type Statement`).
public struct MetadbStatement: Codable, Sendable, Equatable {
    public var database: String
    public var query: String
    public var calls: Int64
    public var totalMs: Double
    public var meanMs: Double
    public var rows: Int64

    public init(database: String, query: String, calls: Int64, totalMs: Double, meanMs: Double, rows: Int64) {
        self.database = database
        self.query = query
        self.calls = calls
        self.totalMs = totalMs
        self.meanMs = meanMs
        self.rows = rows
    }

    enum CodingKeys: String, CodingKey { case database, query, calls, totalMs = "total_ms", meanMs = "mean_ms", rows }
}

/// A snapshot of a project's cluster (`type Snapshot`).
public struct MetadbSnapshot: Codable, Sendable, Equatable {
    public var name: String
    public var created: String
    public var postgresVersion: String
    public var sizeBytes: Int64
    public var gitCommit: String?

    public init(name: String, created: String, postgresVersion: String, sizeBytes: Int64, gitCommit: String?) {
        self.name = name
        self.created = created
        self.postgresVersion = postgresVersion
        self.sizeBytes = sizeBytes
        self.gitCommit = gitCommit
    }

    enum CodingKeys: String, CodingKey {
        case name, created, postgresVersion = "postgres_version", sizeBytes = "size_bytes", gitCommit = "git_commit"
    }
}

public struct MetadbDatabase: Codable, Sendable, Equatable {
    public var name: String
    public var sizeBytes: Int64
    public var owner: String

    public init(name: String, sizeBytes: Int64, owner: String) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.owner = owner
    }

    enum CodingKeys: String, CodingKey { case name, sizeBytes = "size_bytes", owner }
}

/// A base backup (`type Backup`).
public struct MetadbBackup: Codable, Sendable, Equatable {
    public var id: String
    public var started: String
    public var finished: String
    public var timeline: Int
    public var startLSN: String
    public var endLSN: String
    public var postgresVersion: String
    public var sizeBytes: Int64
    public var verified: String?
    public var parent: String?

    public init(id: String, started: String, finished: String, timeline: Int, startLSN: String, endLSN: String,
                postgresVersion: String, sizeBytes: Int64, verified: String?, parent: String? = nil) {
        self.parent = parent
        self.id = id
        self.started = started
        self.finished = finished
        self.timeline = timeline
        self.startLSN = startLSN
        self.endLSN = endLSN
        self.postgresVersion = postgresVersion
        self.sizeBytes = sizeBytes
        self.verified = verified
    }

    enum CodingKeys: String, CodingKey {
        case id, started, finished, timeline, startLSN = "start_lsn", endLSN = "end_lsn", postgresVersion = "postgres_version"
        case sizeBytes = "size_bytes", verified, parent
    }
}

/// The archive and its reach (`type Archive`).
public struct MetadbArchive: Codable, Sendable, Equatable {
    public var state: String
    public var target: String
    public var sizeBytes: Int64
    public var lagSeconds: Double?
    public var restorableFrom: String?
    public var restorableTo: String?
    public var problem: String?
    public var restorePoints: [String]

    public init(state: String, target: String, sizeBytes: Int64, lagSeconds: Double?, restorableFrom: String?, restorableTo: String?,
                problem: String?, restorePoints: [String]) {
        self.state = state
        self.target = target
        self.sizeBytes = sizeBytes
        self.lagSeconds = lagSeconds
        self.restorableFrom = restorableFrom
        self.restorableTo = restorableTo
        self.problem = problem
        self.restorePoints = restorePoints
    }

    enum CodingKeys: String, CodingKey {
        case state, target, sizeBytes = "size_bytes", lagSeconds = "lag_seconds", restorableFrom = "restorable_from"
        case restorableTo = "restorable_to", problem, restorePoints = "restore_points"
    }
}

/// What a restore to a moment reached (`type Restored`).
public struct MetadbRestored: Codable, Sendable, Equatable {
    public var backup: String
    public var reachedTime: String?
    public var reachedLSN: String?
    public var replayedBytes: Int64
    public var stoppedEarly: String?

    public init(backup: String, reachedTime: String?, reachedLSN: String?, replayedBytes: Int64, stoppedEarly: String?) {
        self.backup = backup
        self.reachedTime = reachedTime
        self.reachedLSN = reachedLSN
        self.replayedBytes = replayedBytes
        self.stoppedEarly = stoppedEarly
    }

    enum CodingKeys: String, CodingKey {
        case backup, reachedTime = "reached_time", reachedLSN = "reached_lsn", replayedBytes = "replayed_bytes", stoppedEarly = "stopped_early"
    }
}

/// One sample of the project's history (`type HistorySample`).
public struct MetadbHistorySample: Codable, Sendable, Equatable {
    /// Seconds since the epoch.
    public var time: Double
    public var committed: Double
    public var rolledBack: Double
    public var rowsRead: Double
    public var rowsWritten: Double
    public var blocksHit: Double
    public var blocksRead: Double
    public var walBytes: Double
    public var databaseBytes: Double
    public var activeConnections: Int
    public var idleConnections: Int
    public var idleInTransactionConnections: Int
    /// Checkpoints (timed and requested), cumulative.
    public var checkpoints: Double = 0
    public var restarts: Int
    /// The service's state then (`ready`, `recovering`, …).
    public var state: String

    public init(time: Double, committed: Double = 0, rolledBack: Double = 0, rowsRead: Double = 0, rowsWritten: Double = 0,
                blocksHit: Double = 0, blocksRead: Double = 0, walBytes: Double = 0, databaseBytes: Double = 0, activeConnections: Int = 0,
                idleConnections: Int = 0, idleInTransactionConnections: Int = 0, restarts: Int = 0, state: String = "ready") {
        self.time = time
        self.committed = committed
        self.rolledBack = rolledBack
        self.rowsRead = rowsRead
        self.rowsWritten = rowsWritten
        self.blocksHit = blocksHit
        self.blocksRead = blocksRead
        self.walBytes = walBytes
        self.databaseBytes = databaseBytes
        self.activeConnections = activeConnections
        self.idleConnections = idleConnections
        self.idleInTransactionConnections = idleInTransactionConnections
        self.restarts = restarts
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case time, committed, rolledBack = "rolled_back", rowsRead = "rows_read", rowsWritten = "rows_written", blocksHit = "blocks_hit"
        case blocksRead = "blocks_read", walBytes = "wal_bytes", databaseBytes = "database_bytes", activeConnections = "active_connections"
        case idleConnections = "idle_connections", idleInTransactionConnections = "idle_in_transaction_connections", checkpoints, restarts, state
    }
}

extension MetadbHistorySample: JSONValueRepresentable {
    /// The sample as the `Codable` encoding gives it, built directly: an hour of history is
    /// 720 samples of 16 fields, which the generic walk took 9 ms to encode (release build).
    public var jsonValue: JSONValue {
        typealias K = CodingKeys
        return .object(JSONObject(uniqueKeys: [
            (K.time.stringValue, .float(time)), (K.committed.stringValue, .float(committed)), (K.rolledBack.stringValue, .float(rolledBack)),
            (K.rowsRead.stringValue, .float(rowsRead)), (K.rowsWritten.stringValue, .float(rowsWritten)), (K.blocksHit.stringValue, .float(blocksHit)),
            (K.blocksRead.stringValue, .float(blocksRead)), (K.walBytes.stringValue, .float(walBytes)), (K.databaseBytes.stringValue, .float(databaseBytes)),
            (K.activeConnections.stringValue, .int(Int64(activeConnections))), (K.idleConnections.stringValue, .int(Int64(idleConnections))),
            (K.idleInTransactionConnections.stringValue, .int(Int64(idleInTransactionConnections))), (K.checkpoints.stringValue, .float(checkpoints)),
            (K.restarts.stringValue, .int(Int64(restarts))), (K.state.stringValue, .string(state)),
        ]))
    }
}
