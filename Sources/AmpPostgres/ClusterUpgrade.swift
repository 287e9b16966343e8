#if canImport(Glibc)
import Glibc
#endif
import CFiles
import ChildProcess
import Synchronization
import SystemSupport

/// How `pg_upgrade` moves the data files into the new cluster. Never `--link`: it makes the
/// old cluster unusable once the new one has started, so there would be no rollback.
public enum UpgradeTransfer: String, Sendable, Equatable {
    /// `--clone`: reflinks (copy-on-write) where the file system has them; as fast as
    /// `--link`, and the old cluster stays intact.
    case clone
    /// `--copy`: a full copy.
    case copy
}

/// The steps of `ampctl upgrade`, in order; each is named in the progress output and, under
/// systemd, in the unit's status.
public enum UpgradePhase: String, Sendable, CaseIterable {
    case checking = "checking (pg_upgrade --check)"
    case stopping = "stopping the service"
    case initialising = "creating the new cluster (initdb)"
    case upgrading = "upgrading (pg_upgrade)"
    case swapping = "swapping the clusters"
    case starting = "starting the new cluster"
    case analysing = "rebuilding statistics (vacuumdb --analyze-in-stages)"
    case extensions = "updating extensions (ALTER EXTENSION … UPDATE)"

    /// `[n/8] text`.
    public var numbered: String {
        let index = (Self.allCases.firstIndex(of: self) ?? 0) + 1
        return "[\(index)/\(Self.allCases.count)] \(rawValue)"
    }
}

/// An upgrade that cannot be made, or a step that failed. The original cluster is as it was
/// whenever one of these is thrown.
public struct UpgradeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Nothing to do, or a downgrade asked for.
        case notNewer
        /// Binaries of the old or the new version are missing.
        case binariesMissing
        /// Not enough free space for the copy.
        case noSpace
        /// The data directory is not a cluster, or belongs to another account.
        case unusable
        /// A step (initdb, pg_upgrade, the swap) failed.
        case stepFailed
        /// No rollback copy to restore or drop.
        case noRollback
    }

    public var code: Code
    public var message: String
    /// Where the failed step's own log is, when it left one.
    public var logPath: String?

    public init(_ code: Code, _ message: String, logPath: String? = nil) {
        self.code = code
        self.message = message
        self.logPath = logPath
    }

    public var description: String { message + (logPath.map { "; its log: \($0)" } ?? "") }
}

/// What an upgrade will do, decided from measured facts without I/O (``decide(_:)``).
public struct UpgradePlan: Sendable, Equatable {
    /// The facts a plan is made from.
    public struct Facts: Sendable, Equatable {
        public var clusterMajor: Int
        public var oldBinaries: PostgresBinaries?
        public var newBinaries: PostgresBinaries
        public var newMajor: Int
        /// Whether the old cluster has data checksums (`pg_controldata`).
        public var checksums: Bool
        public var clusterBytes: UInt64
        public var freeBytes: UInt64?
        /// Whether the amp dir's file system shares extents, so that `--clone` (and the
        /// scratch copy of the check) copy no data blocks.
        public var sharesExtents: Bool = false
        /// initdb's locale, encoding and extra arguments from the project's settings.
        public var locale: String
        public var encoding: String

        public init(clusterMajor: Int, oldBinaries: PostgresBinaries?, newBinaries: PostgresBinaries, newMajor: Int, checksums: Bool,
                    clusterBytes: UInt64, freeBytes: UInt64?, locale: String, encoding: String) {
            self.clusterMajor = clusterMajor
            self.oldBinaries = oldBinaries
            self.newBinaries = newBinaries
            self.newMajor = newMajor
            self.checksums = checksums
            self.clusterBytes = clusterBytes
            self.freeBytes = freeBytes
            self.locale = locale
            self.encoding = encoding
        }
    }

    public var oldMajor: Int
    public var newMajor: Int
    public var oldBinaries: PostgresBinaries
    public var newBinaries: PostgresBinaries
    /// initdb arguments for the new cluster: the same locale and encoding, the same checksum
    /// setting (PostgreSQL 18 turns checksums on by default, so "off" must be said there).
    public var initdbArguments: [String]
    /// Free space needed: a full copy plus room for the new cluster's WAL; with shared
    /// extents only the new catalogue, WAL and what cannot be shared (``cloneShareBytes(_:)``).
    public var neededBytes: UInt64
    public var freeBytes: UInt64?

    /// Margin above the cluster's size: initdb's files and a WAL segment.
    public static let marginBytes: UInt64 = 64 << 20

    /// What a clone upgrade writes beyond the margin, where extents are shared: the relation
    /// files are reflinked (no data blocks), but the file system still spends metadata on
    /// every shared extent and pg_upgrade rewrites the system catalogues, the visibility and
    /// free-space maps and pg_xact; an eighth of the cluster bounds that with room to spare.
    public static func cloneShareBytes(_ clusterBytes: UInt64) -> UInt64 { clusterBytes / 8 }

    /// The plan, or why there is none.
    public static func decide(_ f: Facts) -> Result<UpgradePlan, UpgradeError> {
        guard f.newMajor > f.clusterMajor else {
            return .failure(UpgradeError(
                .notNewer,
                f.newMajor == f.clusterMajor
                    ? "the cluster is already PostgreSQL \(f.clusterMajor); nothing to upgrade (name a newer version with --to or --bin-dir)"
                    : "PostgreSQL \(f.newMajor) in \(f.newBinaries.directory) is older than the cluster (\(f.clusterMajor)); pg_upgrade only goes forward"))
        }
        guard let old = f.oldBinaries else {
            return .failure(UpgradeError(
                .binariesMissing,
                "the PostgreSQL \(f.clusterMajor) binaries are needed to read the old cluster and are not installed: "
                    + "install them (Debian: sudo apt install postgresql-\(f.clusterMajor)) or pass --old-bin-dir DIR"))
        }
        let needed = f.sharesExtents ? cloneShareBytes(f.clusterBytes) &+ marginBytes : f.clusterBytes &+ marginBytes
        if let free = f.freeBytes, free < needed {
            let how = f.sharesExtents
                ? "it clones the cluster (\(DiskSpace.megabytes(f.clusterBytes)), extents shared) and needs"
                : "it copies the cluster (\(DiskSpace.megabytes(f.clusterBytes))) and needs"
            return .failure(UpgradeError(
                .noSpace,
                "not enough disk space for the upgrade: \(how) "
                    + "\(DiskSpace.megabytes(needed)) free, has \(DiskSpace.megabytes(free)); free some space (`ampctl du` shows what amp keeps)"))
        }
        var arguments = ["--locale=\(f.locale)", "--encoding=\(f.encoding)"]
        if f.checksums {
            arguments.append("--data-checksums")
        } else if f.newMajor >= 18 {
            arguments.append("--no-data-checksums")
        }
        return .success(UpgradePlan(
            oldMajor: f.clusterMajor, newMajor: f.newMajor, oldBinaries: old, newBinaries: f.newBinaries,
            initdbArguments: arguments, neededBytes: needed, freeBytes: f.freeBytes))
    }
}

/// Upgrades one cluster with `pg_upgrade`, never in place: the new cluster is made beside the
/// old one, and the two are swapped with one atomic `renameat2(RENAME_EXCHANGE)`; the old one
/// is then kept under `rollbackDirectory` until it is dropped or restored. Every failure before
/// the swap removes what was made and leaves the original untouched.
///
/// Runs as the owner of the data directory; the caller holds the amp dir's lock, so no ampd
/// starts meanwhile.
public final class ClusterUpgrader: Sendable {
    public let dataDirectory: String
    /// Where the old cluster goes after the swap (`.amp/rollback`).
    public let rollbackDirectory: String
    /// A short directory for the sockets of the servers pg_upgrade starts.
    public let socketDirectory: String
    public let plan: UpgradePlan
    /// What the last check or run did that the user should know (filled as it goes).
    public let notes = Mutex<[String]>([])

    public init(dataDirectory: String, rollbackDirectory: String, socketDirectory: String, plan: UpgradePlan) {
        self.dataDirectory = dataDirectory
        self.rollbackDirectory = rollbackDirectory
        self.socketDirectory = socketDirectory
        self.plan = plan
    }

    /// The new cluster is made here, beside the data directory (same file system, so the
    /// swap is a rename and `--clone` can share extents).
    public var workDirectory: String { FileSystem.parentDirectory(dataDirectory) + "/.upgrade-\(plan.newMajor)" }
    /// Where the old cluster is kept after the swap.
    public var rollbackCopy: String { rollbackDirectory + "/metadb-\(plan.oldMajor)" }

    static let environment = ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"]

    /// Runs `pg_upgrade --check` against a scratch new cluster: `--clone` first, `--copy`
    /// when the file system cannot clone. Returns the transfer mode that passed.
    ///
    /// Command: `pg_upgrade --check -b OLD -B NEW -d OLDDATA -D NEWDATA --socketdir DIR
    /// -p 50432 -P 50433 --clone|--copy`; see
    /// <https://www.postgresql.org/docs/18/pgupgrade.html>.
    public func check() async throws(UpgradeError) -> UpgradeTransfer {
        try removeWork()
        let source = try await prepareSource()
        defer { if source != dataDirectory { try? removeTree(source) } }
        try await initdb()
        defer { try? removeTree(workDirectory) }
        return try await chooseTransfer(source: source)
    }

    /// `pg_upgrade --check --clone`, then `--copy` when the file system cannot clone; the
    /// mode that passed.
    private func chooseTransfer(source: String) async throws(UpgradeError) -> UpgradeTransfer {
        let clone = try await pgUpgrade(.clone, check: true, source: source)
        if clone.succeeded { return .clone }
        if clone.text.lowercased().contains("clon") {
            let copy = try await pgUpgrade(.copy, check: true, source: source)
            if copy.succeeded { return .copy }
            throw failure("pg_upgrade --check", copy)
        }
        throw failure("pg_upgrade --check", clone)
    }

    /// Attribute options every supported PostgreSQL knows (`ALTER TABLE … ALTER COLUMN … SET`).
    /// Others (a distribution's own, such as Debian 15.20's `pg_attver` on every column) make
    /// the new server refuse pg_upgrade's schema restore.
    static let knownAttributeOptions: Set<String> = ["n_distinct", "n_distinct_inherited"]

    /// The old cluster as pg_upgrade should read it: the data directory itself, or — when it
    /// has attribute options the new version does not know — a scratch copy (reflinked where
    /// possible) with those options removed, so the original is never changed.
    func prepareSource() async throws(UpgradeError) -> String {
        let unknown = try await withOldServer(dataDirectory, extraParameters: []) { handle async -> [String] in
            await Self.unknownAttributeOptions(handle)
        }
        guard !unknown.isEmpty else { return dataDirectory }
        let scratch = sourceCopy
        try? removeTree(scratch)
        var reflinked = false
        do {
            try ClusterTemplateCache.copyTree(dataDirectory, to: scratch, reflinked: &reflinked)
        } catch {
            try? removeTree(scratch)
            throw UpgradeError(.stepFailed, "cannot copy the cluster to \(scratch) to prepare it: \(error.message); nothing was changed")
        }
        unlink(scratch + "/postmaster.pid")
        let options = Set(unknown).sorted().joined(separator: ", ")
        let cleared = try await withOldServer(scratch, extraParameters: [("allow_system_table_mods", "on")]) { handle async -> Bool in
            await Self.removeUnknownAttributeOptions(handle)
        }
        guard cleared else {
            try? removeTree(scratch)
            throw UpgradeError(.stepFailed, "could not remove the attribute options \(options) (unknown to PostgreSQL \(plan.newMajor)) in a copy of the cluster; nothing was changed")
        }
        notes.withLock { $0.append("attribute options unknown to PostgreSQL \(plan.newMajor) (\(options)) were left out of the upgraded cluster; the original keeps them") }
        return scratch
    }

    /// Where the scratch copy of the old cluster is made when it needs preparing.
    public var sourceCopy: String { FileSystem.parentDirectory(dataDirectory) + "/.upgrade-source-\(plan.oldMajor)" }

    /// Starts `directory` with the old binaries on the private socket directory for `body`.
    private func withOldServer<T: Sendable>(
        _ directory: String, extraParameters: [(String, String)], _ body: (PostgresHandle) async -> T
    ) async throws(UpgradeError) -> T {
        let server: PostgresServer
        do {
            let version = try await plan.oldBinaries.version()
            var builder = PostgresBuilder(dataDirectory: directory).binaries(plan.oldBinaries, version: version)
                .socketDirectory(socketDirectory).developmentDefaults(false).logger(PostgresBuilder.silentLogger)
            for (name, value) in extraParameters { builder = builder.configParameter(name, value) }
            server = try await builder.start()
        } catch {
            throw UpgradeError(.unusable, "the PostgreSQL \(plan.oldMajor) cluster at \(directory) does not start: \(error.message); nothing was changed")
        }
        let result = await body(server.handle)
        _ = await server.stop()
        return result
    }

    /// The databases a client can connect to.
    static func databases(_ handle: PostgresHandle) -> [String] {
        ((try? LibPQ.query(handle.conninfo, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")) ?? []).compactMap { $0 }
    }

    static func conninfo(_ handle: PostgresHandle, database: String) -> String {
        LibPQ.socketConninfo(directory: handle.socketDirectory, port: handle.port, database: database, user: handle.user)
    }

    /// `option` names set on user columns that are not in ``knownAttributeOptions``.
    static func unknownAttributeOptions(_ handle: PostgresHandle) async -> [String] {
        var found: [String] = []
        let known = knownAttributeOptions.map { "'\($0)'" }.joined(separator: ",")
        for database in databases(handle) {
            let rows = (try? LibPQ.query(conninfo(handle, database: database), """
                SELECT DISTINCT split_part(o, '=', 1) FROM pg_attribute, unnest(attoptions) o
                WHERE attrelid >= 16384 AND split_part(o, '=', 1) NOT IN (\(known))
                """)) ?? []
            found += rows.compactMap { $0 }
        }
        return found
    }

    /// Removes the unknown options from every user column's `attoptions` (run on the scratch
    /// copy only, with `allow_system_table_mods`); true when every database was done.
    static func removeUnknownAttributeOptions(_ handle: PostgresHandle) async -> Bool {
        let known = knownAttributeOptions.map { "'\($0)'" }.joined(separator: ",")
        for database in databases(handle) {
            do {
                _ = try LibPQ.rows(conninfo(handle, database: database), """
                    UPDATE pg_attribute SET attoptions = (
                        SELECT CASE WHEN count(*) = 0 THEN NULL ELSE array_agg(o) END
                        FROM unnest(attoptions) o WHERE split_part(o, '=', 1) IN (\(known)))
                    WHERE attrelid >= 16384 AND EXISTS (
                        SELECT 1 FROM unnest(attoptions) o WHERE split_part(o, '=', 1) NOT IN (\(known)))
                    """)
            } catch {
                return false
            }
        }
        return true
    }

    /// Checks (``check()``'s steps), makes the new cluster and upgrades into it, then swaps it
    /// in; the old cluster ends up at ``rollbackCopy``. `progress` is told each phase as it
    /// begins. Returns the transfer mode used.
    @discardableResult
    public func run(progress: @Sendable (UpgradePhase) -> Void) async throws(UpgradeError) -> UpgradeTransfer {
        if FileSystem.exists(rollbackCopy) {
            throw UpgradeError(
                .stepFailed,
                "a rollback copy of PostgreSQL \(plan.oldMajor) is already kept at \(rollbackCopy); drop it first (`ampctl upgrade --finish`) or restore it (`ampctl upgrade --rollback`)")
        }
        try removeWork()
        progress(.checking)
        let source = try await prepareSource()
        defer { if source != dataDirectory { try? removeTree(source) } }
        progress(.initialising)
        try await initdb()
        let transfer: UpgradeTransfer
        do {
            transfer = try await chooseTransfer(source: source)
        } catch {
            try? removeTree(workDirectory)
            throw error
        }
        progress(.upgrading)
        let result = try await pgUpgrade(transfer, check: false, source: source)
        guard result.succeeded else {
            let logs = keepLogs()
            try? removeTree(workDirectory)
            throw failure("pg_upgrade", result, logPath: logs)
        }
        progress(.swapping)
        do {
            try makeDirectories(rollbackDirectory)
        } catch {
            try? removeTree(workDirectory)
            throw UpgradeError(.stepFailed, "\(error); nothing was changed")
        }
        let code = amp_exchange(workDirectory, dataDirectory)
        guard code == 0 else {
            try? removeTree(workDirectory)
            throw UpgradeError(.stepFailed, "cannot swap \(workDirectory) and \(dataDirectory): \(String(cString: strerror(code))); nothing was changed")
        }
        // The old cluster is now at workDirectory: keep it as the rollback copy.
        if rename(workDirectory, rollbackCopy) != 0 {
            throw UpgradeError(
                .stepFailed,
                "the upgrade is done, but the old cluster could not be moved from \(workDirectory) to \(rollbackCopy): \(String(cString: strerror(errno))); move it there by hand")
        }
        // Its modification time now says when it was kept (`ampctl gc --older-than`).
        utimensat(AT_FDCWD, rollbackCopy, nil, 0)
        removeScripts()
        return transfer
    }

    /// Puts the rollback copy back in place of the data directory; the upgraded cluster is
    /// removed (changes made since the upgrade are lost: the caller asks first).
    public static func rollback(dataDirectory: String, rollbackCopy: String) throws(UpgradeError) {
        guard FileSystem.isDirectory(rollbackCopy) else {
            throw UpgradeError(.noRollback, "no rollback copy at \(rollbackCopy); nothing to restore")
        }
        let code = amp_exchange(rollbackCopy, dataDirectory)
        guard code == 0 else {
            throw UpgradeError(.stepFailed, "cannot swap \(rollbackCopy) and \(dataDirectory): \(String(cString: strerror(code))); nothing was changed")
        }
        do {
            try removeTree(rollbackCopy)
        } catch {
            throw UpgradeError(.stepFailed, "the old cluster is back; the upgraded one could not be removed from \(rollbackCopy): \(error); remove it by hand")
        }
    }

    /// After an upgrade, on the new cluster running at `socketDirectory`/`port`:
    /// `vacuumdb --all --analyze-in-stages`, then `ALTER EXTENSION … UPDATE` for every extension
    /// whose installed version is older than the new server's default. `progress` is told each
    /// phase; returns what to tell the user (nothing here is fatal: the upgrade is done).
    ///
    /// Command: `vacuumdb --all --analyze-in-stages -h SOCKETDIR -p PORT`; see
    /// <https://www.postgresql.org/docs/18/app-vacuumdb.html>.
    public static func followUp(socketDirectory: String, port: Int, binaries: PostgresBinaries, progress: (UpgradePhase) -> Void) async -> [String] {
        var notes: [String] = []
        progress(.analysing)
        let vacuum = try? await runCommand(
            binaries.path("vacuumdb"), ["--all", "--analyze-in-stages", "-h", socketDirectory, "-p", "\(port)"], environment: environment, timeout: nil)
        if vacuum?.succeeded != true {
            notes.append("vacuumdb --analyze-in-stages failed (\(vacuum?.text.split(separator: "\n").last.map(String.init) ?? "not run")); run it yourself")
        }
        progress(.extensions)
        let databases = (try? LibPQ.query(LibPQ.socketConninfo(directory: socketDirectory, port: port, database: "postgres"),
                                          "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")) ?? []
        for case let database? in databases {
            let conninfo = LibPQ.socketConninfo(directory: socketDirectory, port: port, database: database)
            let stale = (try? LibPQ.query(conninfo, """
                SELECT e.extname FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
                WHERE a.default_version IS DISTINCT FROM e.extversion
                """)) ?? []
            for case let ext? in stale {
                do {
                    _ = try LibPQ.rows(conninfo, "ALTER EXTENSION \(LibPQ.quoteIdentifier(ext)) UPDATE")
                    notes.append("updated extension \(ext) in \(database)")
                } catch {
                    notes.append("could not update extension \(ext) in \(database): \(error.message)")
                }
            }
        }
        return notes
    }

    /// Whether the cluster has data checksums (`pg_controldata`'s "Data page checksum version").
    ///
    /// Command: `pg_controldata -D DATADIR`; see <https://www.postgresql.org/docs/15/app-pgcontroldata.html>.
    public static func hasChecksums(dataDirectory: String, binaries: PostgresBinaries) async throws(UpgradeError) -> Bool {
        let output: CommandOutput
        do {
            output = try await runCommand(binaries.path("pg_controldata"), ["-D", dataDirectory], environment: environment)
        } catch {
            throw UpgradeError(.binariesMissing, "cannot run pg_controldata from \(binaries.directory): \(error)")
        }
        guard output.succeeded else { throw UpgradeError(.unusable, "pg_controldata -D \(dataDirectory) failed: \(output.text)") }
        for line in output.text.split(separator: "\n") where line.hasPrefix("Data page checksum version:") {
            return line.split(separator: ":").last?.trimmingWhitespace != "0"
        }
        return false
    }

    // MARK: - steps

    /// Command: `initdb -D WORK --auth=trust --username=USER --locale=L --encoding=E [--data-checksums | --no-data-checksums]`;
    /// see <https://www.postgresql.org/docs/18/app-initdb.html>.
    private func initdb() async throws(UpgradeError) {
        let arguments = ["-D", workDirectory, "--auth=trust", "--username=\(currentUserName())", "--no-instructions"] + plan.initdbArguments
        let output: CommandOutput
        do {
            output = try await runCommand(plan.newBinaries.path("initdb"), arguments, environment: Self.environment, timeout: .seconds(600))
        } catch {
            throw UpgradeError(.binariesMissing, "cannot run initdb from \(plan.newBinaries.directory): \(error)")
        }
        guard output.succeeded else {
            try? removeTree(workDirectory)
            throw failure("initdb", output)
        }
    }

    private func pgUpgrade(_ transfer: UpgradeTransfer, check: Bool, source: String) async throws(UpgradeError) -> CommandOutput {
        var arguments = [
            "-b", plan.oldBinaries.directory, "-B", plan.newBinaries.directory, "-d", source, "-D", workDirectory,
            "-U", currentUserName(), "--socketdir", socketDirectory, "-p", "50432", "-P", "50433", "--\(transfer.rawValue)",
        ]
        if check { arguments.append("--check") }
        do {
            // pg_upgrade writes scripts into its working directory: the work directory's parent.
            return try await runCommand(
                plan.newBinaries.path("pg_upgrade"), arguments, environment: Self.environment,
                workingDirectory: FileSystem.parentDirectory(dataDirectory), timeout: nil)
        } catch {
            try? removeTree(workDirectory)
            throw UpgradeError(.binariesMissing, "cannot run pg_upgrade from \(plan.newBinaries.directory): \(error); install the PostgreSQL \(plan.newMajor) server package")
        }
    }

    private func removeWork() throws(UpgradeError) {
        do {
            try removeTree(workDirectory)
        } catch {
            throw UpgradeError(.stepFailed, "\(error); remove it by hand")
        }
    }

    /// Moves pg_upgrade's logs out of the work directory before it is removed: to
    /// `ROLLBACK/upgrade-logs-NEW`, which the error names.
    private func keepLogs() -> String? {
        let logs = workDirectory + "/pg_upgrade_output.d"
        guard FileSystem.isDirectory(logs) else { return nil }
        let kept = rollbackDirectory + "/upgrade-logs-\(plan.newMajor)"
        try? makeDirectories(rollbackDirectory)
        try? removeTree(kept)
        return rename(logs, kept) == 0 ? kept : nil
    }

    /// pg_upgrade leaves `delete_old_cluster.sh`, `update_extensions.sql` (and, before 15,
    /// `analyze_new_cluster.sh`) in its working directory: amp drops the old cluster itself
    /// (`--finish`) and updates the extensions after the start.
    private func removeScripts() {
        let parent = FileSystem.parentDirectory(dataDirectory)
        for name in ["delete_old_cluster.sh", "analyze_new_cluster.sh", "update_extensions.sql"] { unlink(parent + "/" + name) }
    }

    private func failure(_ step: String, _ output: CommandOutput, logPath: String? = nil) -> UpgradeError {
        let lines = output.text.split(separator: "\n").map { $0.trimmingWhitespace }.filter { !$0.isEmpty }
        let reason = lines.last { !$0.hasPrefix("Failure, exiting") && !$0.hasPrefix("*failure*") } ?? "no output"
        let detail = lines.suffix(6).joined(separator: " | ")
        return UpgradeError(.stepFailed, "\(step) failed: \(reason) (\(detail)); the original cluster is unchanged", logPath: logPath)
    }
}
