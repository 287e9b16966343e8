#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import SystemSupport
import ThreadSupport

/// The continuous archive's moving parts for one running cluster: its replication slot, the
/// `pg_receivewal` command that streams into the archive, and the archive's lag. The
/// supervision (restarts, schedule) is ampd's.
public struct WALArchiver: Sendable {
    /// The slot and the application name of the receiver (`synchronous_standby_names`).
    public static let slotName = "amp_archive"
    public static let applicationName = "amp_archive"

    public let archive: BackupArchive
    public let binaries: PostgresBinaries
    /// The account the tools run as (ampd as root), nil: this process's.
    public let account: ProcessCredentials?

    public init(archive: BackupArchive, binaries: PostgresBinaries, account: ProcessCredentials?) {
        self.archive = archive
        self.binaries = binaries
        self.account = account
    }

    /// What became of the slot.
    public enum SlotState: Sendable, Equatable {
        /// It exists and holds the WAL the archive still needs.
        case kept
        /// It was made now (first start, or after a restore): the archive starts here.
        case created
        /// It had fallen behind further than `max_slot_wal_keep_size` and lost WAL: it was made
        /// again, and the archive has a gap.
        case recreatedAfterLoss
    }

    /// Makes sure the slot exists and still reserves WAL (`pg_create_physical_replication_slot`
    /// with `immediately_reserve`; a slot whose `wal_status` is `lost` is dropped and made
    /// again). See <https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-REPLICATION>.
    public static func ensureSlot(conninfo: String) async -> Result<SlotState, BackupError> {
        await runOnThread(name: "amp-archive-slot") {
            do throws(LibPQError) {
                let rows = try LibPQ.rows(conninfo, "SELECT wal_status, active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = '\(slotName)'")
                if let row = rows.first {
                    guard row.first == "lost" else { return .success(.kept) }
                    if let pid = row.count > 1 ? row[1] : nil, let n = Int32(pid) {
                        _ = try LibPQ.rows(conninfo, "SELECT pg_catalog.pg_terminate_backend(\(n))")
                    }
                    _ = try LibPQ.rows(conninfo, "SELECT pg_catalog.pg_drop_replication_slot('\(slotName)')")
                    _ = try LibPQ.rows(conninfo, "SELECT pg_catalog.pg_create_physical_replication_slot('\(slotName)', true)")
                    return .success(.recreatedAfterLoss)
                }
                _ = try LibPQ.rows(conninfo, "SELECT pg_catalog.pg_create_physical_replication_slot('\(slotName)', true)")
                return .success(.created)
            } catch {
                return .failure(BackupError(.tool, "cannot set up the replication slot \(slotName): \(error.message)"))
            }
        }
    }

    /// Drops the slot (the archive is turned off): the cluster no longer keeps WAL for it.
    public static func dropSlot(conninfo: String) async {
        _ = await runOnThread(name: "amp-archive-slot") {
            try? LibPQ.rows(conninfo, "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = '\(slotName)' AND NOT active")
        }
    }

    /// `pg_receivewal` streaming into the archive's `wal/` on the slot.
    ///
    /// Command: `pg_receivewal -D ARCHIVE/receiving -S amp_archive --no-loop -s 1 -h SOCKETDIR -p PORT -U USER -w [--synchronous]`;
    /// `-s 1` reports its position every second (the lag `ampctl status` shows), and
    /// `--synchronous` flushes each write (and tells the server at once), which
    /// `[backup] synchronous` needs. `PGAPPNAME=amp_archive` names it for
    /// `synchronous_standby_names` and `pg_stat_replication`.
    /// See <https://www.postgresql.org/docs/15/app-pgreceivewal.html>.
    public func receiver(handle: PostgresHandle, synchronous: Bool, output: @escaping @Sendable ([String]) -> Void) -> SpawnConfiguration {
        var arguments = ["-D", archive.receivingDirectory, "-S", Self.slotName, "--no-loop", "-s", "1",
                         "-h", handle.socketDirectory, "-p", "\(handle.port)", "-U", handle.user, "-w"]
        if synchronous { arguments.append("--synchronous") }
        return SpawnConfiguration(
            executable: binaries.path("pg_receivewal"), arguments: arguments, environment: Self.toolEnvironment(application: Self.applicationName),
            workingDirectory: archive.directory, output: .lines(output), deathSignal: SIGTERM, newProcessGroup: true, credentials: account)
    }

    /// The environment of amp's PostgreSQL tools: a fixed PATH and locale, the application name.
    public static func toolEnvironment(application: String) -> [String: String] {
        ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGAPPNAME": application, "PGCONNECT_TIMEOUT": "10"]
    }

    /// The archive's lag: the bytes the server has written that the receiver has not yet
    /// written, and PostgreSQL's own `write_lag` (nil when it is caught up or unknown); nil
    /// when no receiver is connected.
    /// See <https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-REPLICATION-VIEW>.
    public static func lag(conninfo: String) -> (bytes: Int64, seconds: Double?)? {
        (try? LibPQ.rows(conninfo, lagQuery)).flatMap(lag(rows:))
    }

    /// The query behind ``lag(conninfo:)``, for a caller with a connection of its own.
    public static let lagQuery = """
        SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), write_lsn)::bigint,
               extract(epoch FROM write_lag)::float8
        FROM pg_catalog.pg_stat_replication WHERE application_name = '\(applicationName)' ORDER BY backend_start DESC LIMIT 1
        """

    /// The lag in the rows of ``lagQuery``; nil when no receiver is connected.
    public static func lag(rows: [[String?]]) -> (bytes: Int64, seconds: Double?)? {
        guard let row = rows.first, let bytes = row.first.flatMap({ $0 }).flatMap({ Int64($0) }) else { return nil }
        let seconds = row.count > 1 ? row[1].flatMap { Double($0) } : nil
        return (max(0, bytes), bytes <= 0 ? 0 : seconds)
    }
}
