#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import ThreadSupport
import SystemSupport

/// A streaming replica of one cluster by another: the clone (`pg_basebackup -R` on a
/// replication slot), the rejoin of a former primary (`pg_rewind`, else a fresh clone), and
/// the figures both sides report. `ampctl replica` and `ampctl promote` call these; ampd
/// serves a standby as it serves a primary (PostgreSQL's `standby.signal` makes the
/// difference).
///
/// See <https://www.postgresql.org/docs/15/warm-standby.html>,
/// <https://www.postgresql.org/docs/15/app-pgbasebackup.html> and
/// <https://www.postgresql.org/docs/15/app-pgrewind.html>.
public enum Replication {
    /// The primary's slot for the standby project `name` (`amp_replica_NAME`, `-` as `_`).
    public static func slotName(standby name: String) -> String {
        "amp_replica_" + String(name.lowercased().unicodeScalars.map { ($0.properties.isAlphabetic && $0.isASCII) || ("0"..."9").contains($0) ? Character($0) : "_" }).prefix(50)
    }

    /// Where the WAL comes from: a libpq connection string (with the password, when one is
    /// needed) and how messages show it (without).
    public struct Source: Sendable, Equatable {
        public var conninfo: String
        public var display: String

        /// A project's socket on this machine (trusted: the socket directory is the account's).
        public static func socket(directory: String, port: Int, user: String, application: String) -> Source {
            Source(conninfo: LibPQ.socketConninfo(directory: directory, port: port, database: "postgres", user: user, application: application),
                   display: "the socket \(directory)/.s.PGSQL.\(port)")
        }

        /// A URL or connection string (TCP, with SCRAM and TLS as it asks); nil and why when
        /// libpq cannot read it.
        public static func url(_ text: String, application: String) -> Result<Source, LibPQError> {
            let pairs: [(key: String, value: String)]
            do { pairs = try LibPQ.parseConninfo(text) } catch { return .failure(error) }
            var kept = pairs.filter { $0.key != "application_name" && $0.key != "dbname" && $0.key != "replication" }
            kept.append(("dbname", "postgres"))
            kept.append(("application_name", application))
            if !kept.contains(where: { $0.key == "connect_timeout" }) { kept.append(("connect_timeout", "10")) }
            let shown = ["host", "hostaddr", "port", "user", "sslmode"].compactMap { key in kept.first { $0.key == key }.map { "\(key)=\($0.value)" } }.joined(separator: " ")
            return .success(Source(conninfo: LibPQ.conninfo(kept.map { ($0.key, $0.value) }), display: shown))
        }
    }

    /// Why a replica cannot be made or rejoined, with the fix.
    public struct Failure: Error, Sendable, Equatable {
        public var message: String
        public init(_ message: String) { self.message = message }
    }

    /// What the primary is: its major version, and whether it can feed a standby.
    public struct PrimaryFacts: Sendable, Equatable {
        public var major: Int
        public var inRecovery: Bool
        public var walLevel: String
        public var maxWalSenders: Int
        /// Whether the role may replicate (superuser or REPLICATION).
        public var mayReplicate: Bool
        /// The slot's state: nil (none), false (inactive), true (a standby streams on it).
        public var slotActive: Bool?

        /// Why a standby cannot be cloned from it, or nil.
        public var problem: String? {
            if inRecovery { return "it is itself a standby; clone from its primary" }
            if walLevel == "minimal" { return "its wal_level is minimal; set wal_level = replica in its [postgres.parameters] and restart it" }
            if maxWalSenders < 1 { return "its max_wal_senders is 0; raise it in its [postgres.parameters] and restart it" }
            if !mayReplicate { return "the role may not replicate; connect as a superuser, or ALTER ROLE … REPLICATION on the primary" }
            return nil
        }

        /// Reads ``factsQuery``'s row.
        public init?(row: [String?]) {
            guard row.count == 6, let v = row[0].flatMap({ Int($0) }), let senders = row[3].flatMap({ Int($0) }) else { return nil }
            major = v / 10000
            inRecovery = row[1] == "t"
            walLevel = row[2] ?? ""
            maxWalSenders = senders
            mayReplicate = row[4] == "t"
            slotActive = row[5].map { $0 == "t" }
        }
    }

    /// The primary's facts for slot `slot` (one row for ``PrimaryFacts/init(row:)``).
    public static func factsQuery(slot: String) -> String {
        """
        SELECT current_setting('server_version_num'), pg_catalog.pg_is_in_recovery(), current_setting('wal_level'),
               current_setting('max_wal_senders'),
               (SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user),
               (SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = \(LibPQ.quoteLiteral(slot)))
        """
    }

    /// Reads the primary's facts and frees the slot when no standby streams on it (a clone
    /// made before, now replaced); fails with the fix when it cannot feed a standby.
    public static func checkPrimary(_ source: Source, slot: String, dropInactiveSlot: Bool) async throws(Failure) -> PrimaryFacts {
        let conninfo = source.conninfo
        let result = await runOnThread(name: "amp-replica") { () -> Result<PrimaryFacts?, LibPQError> in
            Result { () throws(LibPQError) in
                let connection = try LibPQConnection(conninfo)
                guard let row = try connection.rows(factsQuery(slot: slot)).first, var facts = PrimaryFacts(row: row) else { return nil }
                if facts.slotActive == false, dropInactiveSlot, facts.problem == nil {
                    _ = try connection.rows("SELECT pg_catalog.pg_drop_replication_slot(\(LibPQ.quoteLiteral(slot)))")
                    facts.slotActive = nil
                }
                return facts
            }
        }
        let facts: PrimaryFacts?
        switch result {
        case .success(let f): facts = f
        case .failure(let e): throw Failure("cannot reach the primary (\(source.display)): \(e.message); start it, or check the URL and password")
        }
        guard let facts else { throw Failure("the primary (\(source.display)) answered, but not as a PostgreSQL server amp can clone") }
        if let problem = facts.problem { throw Failure("the primary (\(source.display)) cannot feed a standby: \(problem)") }
        if facts.slotActive == true {
            throw Failure("a standby already streams on the primary's slot \(slot); stop that standby, or give this project another name")
        }
        return facts
    }

    /// Clones the primary into `directory` (which must not exist): `pg_basebackup -D DIR
    /// -X stream -R -C -S SLOT -c fast`, as `account` when given. `-R` leaves
    /// `standby.signal` and `primary_conninfo`/`primary_slot_name` in
    /// `postgresql.auto.conf`; `-C -S` creates the slot, so the primary keeps the WAL the
    /// standby has not received (bounded by its `max_slot_wal_keep_size`).
    public static func clone(
        _ source: Source, into directory: String, slot: String, binaries: PostgresBinaries, account: ProcessCredentials?, sync: Bool
    ) async throws(Failure) {
        var arguments = ["-D", directory, "-X", "stream", "-R", "-C", "-S", slot, "-c", "fast", "-d", source.conninfo]
        if !sync { arguments.append("--no-sync") }
        let output: CommandOutput
        do {
            output = try await ChildProcess.run(SpawnConfiguration(
                executable: binaries.path("pg_basebackup"), arguments: arguments, environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"],
                output: .lines { _ in }, credentials: account), deadline: nil)
        } catch {
            throw Failure("cannot run pg_basebackup: \(error)")
        }
        guard output.succeeded else {
            let why = output.text.split(separator: "\n").last { $0.contains("error") }.map(String.init) ?? output.text.split(separator: "\n").last.map(String.init) ?? "no output"
            throw Failure("pg_basebackup from \(source.display) failed: \(why)")
        }
    }

    /// Rewinds the former primary at `directory` (stopped) to follow `source`:
    /// `pg_rewind --target-pgdata=DIR --source-server=CONNINFO -R`, then the slot's name in
    /// `postgresql.auto.conf`. `pg_rewind` needs `wal_log_hints = on` or data checksums, and
    /// `full_page_writes = on` (the `durable` profile); without them it refuses and the
    /// caller clones afresh.
    public static func rewind(
        _ source: Source, directory: String, slot: String, binaries: PostgresBinaries, account: ProcessCredentials?
    ) async throws(Failure) {
        let output: CommandOutput
        do {
            output = try await ChildProcess.run(SpawnConfiguration(
                executable: binaries.path("pg_rewind"), arguments: ["--target-pgdata=" + directory, "--source-server=" + source.conninfo, "-R"],
                environment: ["PATH": binaries.directory + ":/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"],
                output: .lines { _ in }, credentials: account), deadline: nil)
        } catch {
            throw Failure("cannot run pg_rewind: \(error)")
        }
        guard output.succeeded else {
            let why = output.text.split(separator: "\n").last { $0.contains("error") || $0.contains("fatal") }.map(String.init)
                ?? output.text.split(separator: "\n").last.map(String.init) ?? "no output"
            throw Failure("pg_rewind from \(source.display) failed: \(why)")
        }
        appendSetting("primary_slot_name", slot, to: directory + "/postgresql.auto.conf")
    }

    /// Creates the slot on the primary when it is missing (a rejoin by `pg_rewind`).
    public static func ensureSlot(_ source: Source, slot: String) async throws(Failure) {
        let conninfo = source.conninfo
        let result = await runOnThread(name: "amp-replica") {
            Result { () throws(LibPQError) in
                _ = try LibPQ.rows(conninfo, """
                    SELECT pg_catalog.pg_create_physical_replication_slot(\(LibPQ.quoteLiteral(slot)))
                    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = \(LibPQ.quoteLiteral(slot)))
                    """)
            }
        }
        if case .failure(let e) = result { throw Failure("cannot create the slot \(slot) on the primary (\(source.display)): \(e.message)") }
    }

    static func appendSetting(_ name: String, _ value: String, to file: String) {
        guard let f = fopen(file, "a") else { return }
        fputs("\(name) = '\(value.replacing("'", with: "''"))'\n", f)
        fclose(f)
    }

    /// The replication figures of a running server, read with the status: its role, and as a
    /// standby its WAL receiver (`pg_stat_wal_receiver`) and how far replay is behind, as a
    /// primary each standby (`pg_stat_replication`, amp's own archiver left out).
    public struct Figures: Sendable, Equatable {
        public var standby: Bool
        /// The WAL receiver's state (`streaming`, `waiting`, …); nil when none runs.
        public var receiver: String?
        /// Where it streams from (`HOST:PORT`, or the socket directory and port).
        public var upstream: String?
        public var slot: String?
        /// Bytes received but not replayed yet, and how long replay is behind (0 when caught up).
        public var lagBytes: Int64?
        public var lagSeconds: Double?
        public var standbys: [Standby] = []

        public struct Standby: Sendable, Equatable {
            public var name: String
            public var state: String
            /// Bytes of WAL the standby has not replayed, and its replay lag as PostgreSQL measures it.
            public var lagBytes: Int64?
            public var lagSeconds: Double?
        }

        /// Reads the ``figuresColumns`` of a row (five columns).
        public init?(columns c: [String?]) {
            guard c.count == 5, let recovery = c[0] else { return nil }
            standby = recovery == "true"
            if let receiver = c[1] {
                let f = receiver.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                if f.count == 4 {
                    self.receiver = f[0].isEmpty ? nil : f[0]
                    if !f[1].isEmpty { upstream = f[1].hasPrefix("/") ? "\(f[1])/.s.PGSQL.\(f[2])" : "\(f[1].contains(":") ? "[\(f[1])]" : f[1]):\(f[2])" }
                    slot = f[3].isEmpty ? nil : f[3]
                }
            }
            lagBytes = c[2].flatMap { Int64($0) }
            lagSeconds = c[3].flatMap { Double($0) }.map { max(0, $0) }
            for line in (c[4] ?? "").split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard f.count == 4 else { continue }
                standbys.append(Standby(name: f[0], state: f[1], lagBytes: Int64(f[2]), lagSeconds: Double(f[3])))
            }
        }
    }

    /// The select-list of ``Figures`` (appended to the status query; one row).
    public static let figuresColumns = """
        pg_catalog.pg_is_in_recovery()::text,
        CASE WHEN pg_catalog.pg_is_in_recovery() THEN (SELECT coalesce(status, '') || E'\\t' || coalesce(sender_host, '') || E'\\t' || coalesce(sender_port::text, '')
            || E'\\t' || coalesce(slot_name, '') FROM pg_catalog.pg_stat_wal_receiver LIMIT 1) END,
        CASE WHEN pg_catalog.pg_is_in_recovery() THEN GREATEST(0, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn()))::bigint::text END,
        CASE WHEN pg_catalog.pg_is_in_recovery() THEN (CASE WHEN pg_catalog.pg_last_wal_receive_lsn() IS NULL
            OR pg_catalog.pg_last_wal_receive_lsn() <= pg_catalog.pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()) END)::text END,
        CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN (SELECT string_agg(coalesce(application_name, '') || E'\\t' || coalesce(state, '') || E'\\t'
            || coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::bigint::text, '') || E'\\t'
            || coalesce(extract(epoch FROM replay_lag)::text, ''), E'\\n' ORDER BY application_name)
            FROM pg_catalog.pg_stat_replication WHERE application_name <> 'amp_archive') END
        """

    /// Whether `directory` holds a standby's configuration (`standby.signal`).
    public static func isStandby(_ directory: String) -> Bool { access(directory + "/standby.signal", F_OK) == 0 }
}

/// Making a project a standby (`ampctl replica init`) and bringing a former primary back as
/// one (`ampctl replica rejoin`), with the project stopped and its lock held by the caller.
/// A failure leaves the project's cluster as it was: the new one is made beside it and put in
/// place by renames, the one it replaces kept in `.amp/rollback/`.
public struct ReplicaSetup: Sendable {
    public var dataDirectory: String
    public var rollbackDirectory: String
    public var source: Replication.Source
    public var slot: String
    /// Where this project's binaries are (`[postgres] bin_dir`), when set.
    public var binDirectory: String?
    /// The account the tools run as (ampctl as root for a project of another account).
    public var account: ProcessCredentials?
    /// Whether the clone is synced to disk (the durable profile).
    public var sync: Bool
    /// A stamp for the names of kept clusters (`metadb-before-replica-STAMP`).
    public var stamp: String

    public init(dataDirectory: String, rollbackDirectory: String, source: Replication.Source, slot: String, binDirectory: String?,
                account: ProcessCredentials?, sync: Bool, stamp: String) {
        self.dataDirectory = dataDirectory
        self.rollbackDirectory = rollbackDirectory
        self.source = source
        self.slot = slot
        self.binDirectory = binDirectory
        self.account = account
        self.sync = sync
        self.stamp = stamp
    }

    var hasCluster: Bool { access(dataDirectory + "/PG_VERSION", F_OK) == 0 }
    var scratch: String { String(dataDirectory[..<(dataDirectory.lastIndex(of: "/") ?? dataDirectory.endIndex)]) + "/.replica-\(getpid())" }

    func binaries(major: Int) async throws(Replication.Failure) -> PostgresBinaries {
        guard let b = await PostgresBinaries.forMajor(major, preferring: binDirectory.map { [$0] } ?? []) else {
            throw Replication.Failure("the primary is PostgreSQL \(major), whose binaries are not installed here; install postgresql-\(major) (or set bin_dir)")
        }
        return b
    }

    /// Clones the primary into the scratch directory and puts it in place.
    func cloneInPlace(_ facts: Replication.PrimaryFacts, label: String, phase: (String) -> Void) async throws(Replication.Failure) -> String? {
        let binaries = try await binaries(major: facts.major)
        let scratch = scratch
        try? removeTree(scratch)
        phase("cloning the primary (\(source.display)) with pg_basebackup on the slot \(slot)")
        do throws(Replication.Failure) {
            try await Replication.clone(source, into: scratch, slot: slot, binaries: binaries, account: account, sync: sync)
        } catch {
            try? removeTree(scratch)
            // The slot pg_basebackup made would hold the primary's WAL for nobody.
            _ = try? await Replication.checkPrimary(source, slot: slot, dropInactiveSlot: true)
            throw error
        }
        // An empty data directory (the layout's) is not worth keeping.
        if !hasCluster { _ = rmdir(dataDirectory) }
        do throws(PostgresError) {
            return try ClusterFiles.putInPlace(scratch, dataDirectory: dataDirectory, aside: rollbackDirectory + "/metadb-before-\(label)-" + stamp)
        } catch {
            throw Replication.Failure(error.message)
        }
    }

    /// `replica init`: the project becomes a hot standby of the source. Refuses to replace a
    /// cluster unless `replace`. Returns where the replaced cluster was kept.
    public func initialize(replace: Bool, phase: (String) -> Void) async throws(Replication.Failure) -> String? {
        if hasCluster && !replace {
            throw Replication.Failure("the project has a cluster of its own (\(dataDirectory)); a standby replaces it: add --replace (it is kept in \(rollbackDirectory))")
        }
        phase("checking the primary (\(source.display))")
        let facts = try await Replication.checkPrimary(source, slot: slot, dropInactiveSlot: true)
        return try await cloneInPlace(facts, label: "replica", phase: phase)
    }

    /// How a former primary came back.
    public enum Rejoined: Sendable, Equatable {
        /// `pg_rewind` brought it in line; the cluster before is kept at `kept`.
        case rewound(kept: String?)
        /// It could not be rewound (`why`), so it was cloned afresh.
        case cloned(kept: String?, why: String)
    }

    /// `replica rejoin`: the former primary follows the source (the promoted standby):
    /// `pg_rewind` on a copy of the cluster (reflinked where the file system can), else a
    /// fresh clone.
    public func rejoin(phase: (String) -> Void) async throws(Replication.Failure) -> Rejoined {
        guard hasCluster, let major = FileContents.text(dataDirectory + "/PG_VERSION", limit: 64).flatMap({ Int($0.trimmingWhitespace) }) else {
            throw Replication.Failure("the project has no cluster in \(dataDirectory) to rejoin; make it a standby with `ampctl replica init --from …`")
        }
        phase("checking the primary (\(source.display))")
        let facts = try await Replication.checkPrimary(source, slot: slot, dropInactiveSlot: false)
        guard facts.major == major else {
            throw Replication.Failure("the primary is PostgreSQL \(facts.major), this cluster \(major); a standby needs the same major version (upgrade one of them first)")
        }
        let binaries = try await binaries(major: major)
        let scratch = scratch
        try? removeTree(scratch)
        phase("copying the cluster for pg_rewind")
        var why: String
        do throws(PostgresError) {
            try ClusterFiles.copy(dataDirectory, to: scratch, owner: account)
            phase("pg_rewind from \(source.display)")
            do throws(Replication.Failure) {
                try await Replication.rewind(source, directory: scratch, slot: slot, binaries: binaries, account: account)
                try await Replication.ensureSlot(source, slot: slot)
                do throws(PostgresError) {
                    return .rewound(kept: try ClusterFiles.putInPlace(scratch, dataDirectory: dataDirectory, aside: rollbackDirectory + "/metadb-before-rejoin-" + stamp))
                } catch {
                    throw Replication.Failure(error.message)
                }
            } catch {
                why = error.message
            }
        } catch {
            why = "cannot copy the cluster: \(error.message)"
        }
        try? removeTree(scratch)
        phase("\(why); cloning afresh instead")
        let fresh = try await Replication.checkPrimary(source, slot: slot, dropInactiveSlot: true)
        return .cloned(kept: try await cloneInPlace(fresh, label: "rejoin", phase: phase), why: why)
    }
}
