#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import SystemSupport

/// A project's archive (`[backup] target`, default `.amp/backup`): `receiving/` is where
/// `pg_receivewal` writes (the segment under way is `….partial`), `wal/` holds every segment
/// it finished and the last partial segment of each abandoned timeline,
/// `base/ID/` the base backups (`pg_basebackup` plain format with its `backup_manifest`, and
/// `amp-backup`, amp's record of it), `restore-points` the named points.
public struct BackupArchive: Sendable {
    public let directory: String
    /// The account that owns the archive when ampd runs as root (the cluster's): files amp
    /// writes are given to it, so the project's own ampd and ampctl can read them later.
    public let owner: ProcessCredentials?

    public init(directory: String, owner: ProcessCredentials? = nil) {
        self.directory = directory
        self.owner = owner
    }

    /// Writes one of amp's small files of the archive (0600), owned by ``owner`` as root.
    func writeOwned(_ path: String, _ text: String) throws(FileError) {
        try writeFileAtomically(path, Array(text.utf8), mode: 0o600)
        if let owner, geteuid() == 0 { _ = lchown(path, owner.uid, owner.gid) }
    }

    public var walDirectory: String { directory + "/wal" }
    public var receivingDirectory: String { directory + "/receiving" }
    public var baseDirectory: String { directory + "/base" }
    public var restorePointsFile: String { directory + "/restore-points" }

    /// Makes the layout (0700; owned by ``owner`` as root).
    public func prepare() throws(BackupError) {
        for dir in [directory, walDirectory, receivingDirectory, baseDirectory] {
            do { try makeDirectories(dir) } catch {
                throw BackupError(.io, "cannot create \(dir): \(error); check [backup] target and its permissions")
            }
            if let owner, geteuid() == 0 { _ = lchown(dir, owner.uid, owner.gid) }
        }
    }

    // MARK: - base backups

    /// The finished base backups, oldest first. A directory without a readable record (a
    /// backup cut short) is not one.
    public func backups() -> [BaseBackup] {
        listDirectory(baseDirectory).compactMap { id in
            guard !id.hasPrefix("."), let text = FileContents.text(baseDirectory + "/" + id + "/" + BaseBackup.recordName, limit: 1 << 16) else { return nil }
            return BaseBackup(id: id, record: text)
        }.sorted { $0.finished < $1.finished }
    }

    public func path(of backup: BaseBackup) -> String { baseDirectory + "/" + backup.id }

    // MARK: - WAL

    /// The archive's WAL files (finished and being received), in segment order.
    public func walFiles() -> [WALFile] {
        let names = Set(listDirectory(walDirectory) + listDirectory(receivingDirectory))
        return names.compactMap { WALFile(name: $0) }.sorted { ($0.segment, $0.timeline, $0.kind == .partial ? 1 : 0) < ($1.segment, $1.timeline, $1.kind == .partial ? 1 : 0) }
    }

    /// The path of a file of ``walFiles()``: in `receiving/` while it is there, else in `wal/`.
    public func path(of file: WALFile) -> String { walPath(file.name) }

    func walPath(_ name: String) -> String {
        let receiving = receivingDirectory + "/" + name
        return access(receiving, F_OK) == 0 ? receiving : walDirectory + "/" + name
    }

    /// Moves what `pg_receivewal` finished (whole segments, history files) from `receiving/`
    /// to `wal/`; with `abandoningTimelinesOtherThan`, also the partial segments of any other
    /// timeline (the cluster moved to a new one: `pg_receivewal` must begin afresh, from the
    /// slot, and would otherwise insist on continuing the old timeline).
    public func settleReceived(abandoningTimelinesOtherThan current: UInt32? = nil) {
        let files = listDirectory(receivingDirectory).compactMap { WALFile(name: $0) }
        let abandon = current.map { tli in files.contains { $0.kind != .history && $0.timeline != tli } } ?? false
        for f in files where f.kind != .partial || abandon {
            _ = rename(receivingDirectory + "/" + f.name, walDirectory + "/" + f.name)
        }
    }

    /// The history of the newest timeline in the archive (a timeline without a history file:
    /// timeline 1, or the newest segment's).
    public func newestHistory(files: [WALFile]) -> TimelineHistory {
        history(of: files.map(\.timeline).max() ?? 1)
    }

    /// The history of timeline `tli` (none recorded: a timeline without parents).
    public func history(of tli: UInt32) -> TimelineHistory {
        if let text = FileContents.text(walPath(historyName(tli)), limit: 1 << 20),
           let history = TimelineHistory(timeline: tli, text: text) {
            return history
        }
        return TimelineHistory(timeline: tli)
    }

    func historyName(_ tli: UInt32) -> String {
        let s = String(tli, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s + ".history"
    }

    /// Seconds since the epoch of the last write to the archive's WAL (nil: no WAL yet).
    public func lastWALWrite(files: [WALFile]) -> Double? {
        guard let newest = files.last(where: { $0.kind != .history }) else { return nil }
        var st = stat()
        guard stat(path(of: newest), &st) == 0 else { return nil }
        return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
    }

    /// The bytes free for the archive on its file system (nil: unknown).
    public func freeBytes() -> UInt64? {
        var st = statvfs()
        guard statvfs(directory, &st) == 0 else { return nil }
        return UInt64(st.f_bavail) &* UInt64(st.f_frsize)
    }

    /// Why the archive cannot take more WAL, in words, when its disk has less than two
    /// segments free; nil otherwise.
    public func diskFullProblem() -> String? {
        guard let free = freeBytes(), free < 2 * WALFile.defaultSegmentSize else { return nil }
        return "the archive's disk is full (\(directory), \(free >> 20) MB free): free space there or move [backup] target; "
            + "the cluster keeps at most [backup] max_slot_wal of WAL for it, then the archive has a gap and a new base backup starts"
    }

    /// The bytes the archive takes.
    public func sizeBytes() -> UInt64 { diskUsage(directory) }

    // MARK: - restore points

    /// The named restore points, oldest first (`NAME<TAB>TIME<TAB>LSN<TAB>TIMELINE` per line).
    public func restorePoints() -> [RestorePoint] {
        guard let text = FileContents.text(restorePointsFile, limit: 4 << 20) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 4, let time = Double(f[1]), let lsn = LSN(f[2]), let tli = UInt32(f[3]) else { return nil }
            return RestorePoint(name: String(f[0]), time: time, lsn: lsn, timeline: tli)
        }
    }

    /// Records a restore point (appended, then flushed).
    public func record(_ point: RestorePoint) throws(BackupError) {
        let existing = FileContents.text(restorePointsFile, limit: 4 << 20) ?? ""
        let line = "\(point.name)\t\(point.time)\t\(point.lsn)\t\(point.timeline)\n"
        do {
            // With pgBackRest and a remote repository, this record may be all the directory holds.
            if access(directory, F_OK) != 0 {
                try makeDirectories(directory)
                if let owner, geteuid() == 0 { _ = lchown(directory, owner.uid, owner.gid) }
            }
            try writeOwned(restorePointsFile, existing + line)
        } catch {
            throw BackupError(.io, "cannot record restore point \(point.name) in \(restorePointsFile): \(error)")
        }
    }

    /// Why `name` cannot name a restore point, or nil.
    public static func restorePointNameProblem(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 63 else { return "it must be 1 to 63 bytes long" }
        guard name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.:".unicodeScalars.contains($0)) }) else {
            return "only letters, digits, _ - . and : are allowed"
        }
        guard name != "latest", !(name.first?.isNumber ?? false) else { return "it must not be latest or start with a digit (those name times)" }
        return nil
    }
}

/// A named moment (`pg_create_restore_point`), recorded by amp so that `restore --to NAME`
/// knows it exists and when it was.
public struct RestorePoint: Sendable, Equatable {
    public var name: String
    public var time: Double
    public var lsn: LSN
    public var timeline: UInt32

    public init(name: String, time: Double, lsn: LSN, timeline: UInt32) {
        self.name = name
        self.time = time
        self.lsn = lsn
        self.timeline = timeline
    }
}

/// One base backup, as amp recorded it after `pg_basebackup` and `pg_verifybackup` succeeded.
public struct BaseBackup: Sendable, Equatable {
    /// The name of amp's record inside the backup's directory.
    public static let recordName = "amp-backup"

    public var id: String
    /// When the backup began and when it was consistent (seconds since the epoch).
    public var started: Double
    public var finished: Double
    public var timeline: UInt32
    public var startLSN: LSN
    public var endLSN: LSN
    /// PG_VERSION of the cluster.
    public var postgresVersion: String
    public var sizeBytes: UInt64
    /// When `ampctl backup verify` last restored it and found it sound (nil: never).
    public var verified: Double?
    /// The backup this one is incremental on (`pg_basebackup --incremental`, PostgreSQL 17+);
    /// nil for a full backup.
    public var parent: String?

    public init(id: String, started: Double, finished: Double, timeline: UInt32, startLSN: LSN, endLSN: LSN,
                postgresVersion: String, sizeBytes: UInt64, verified: Double? = nil, parent: String? = nil) {
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

    /// Parses a record (`key=value` lines); nil when a field is missing or malformed.
    public init?(id: String, record: String) {
        let fields = keyValueLines(record)
        guard let started = fields["started"].flatMap({ Double($0) }), let finished = fields["finished"].flatMap({ Double($0) }),
              let tli = fields["timeline"].flatMap({ UInt32($0) }), let start = fields["start_lsn"].flatMap({ LSN($0) }),
              let end = fields["end_lsn"].flatMap({ LSN($0) }), let version = fields["postgres_version"], !version.isEmpty,
              let size = fields["size_bytes"].flatMap({ UInt64($0) }) else { return nil }
        self.init(id: id, started: started, finished: finished, timeline: tli, startLSN: start, endLSN: end,
                  postgresVersion: version, sizeBytes: size, verified: fields["verified"].flatMap { Double($0) }, parent: fields["parent"])
    }

    /// The record's text.
    public var record: String {
        "started=\(started)\nfinished=\(finished)\ntimeline=\(timeline)\nstart_lsn=\(startLSN)\nend_lsn=\(endLSN)\n"
            + "postgres_version=\(postgresVersion)\nsize_bytes=\(sizeBytes)\n" + (verified.map { "verified=\($0)\n" } ?? "")
            + (parent.map { "parent=\($0)\n" } ?? "")
    }
}

/// Why a backup or restore failed: a code for the exit status, and a message naming the fix.
public struct BackupError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Files of the archive could not be read or written.
        case io
        /// A PostgreSQL tool (pg_basebackup, pg_verifybackup, pg_receivewal, the restored server) failed.
        case tool
        /// The archive holds nothing that reaches the requested moment.
        case notRestorable
        /// The request itself is wrong (a bad time, an unknown restore point).
        case usage
        /// A check found damage (verify).
        case damaged
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// `2026-12-04T22:30:05Z` for seconds since the epoch.
public func isoTime(_ seconds: Double) -> String { utcTimestamp(Int64(seconds.rounded(.down))) }

/// `20261204T223005Z`: the time in names (backup IDs, restore points, directories); now by default.
public func compactTime(_ seconds: Double = epochNow()) -> String { isoTime(seconds).filter { $0 != "-" && $0 != ":" } }

extension BackupArchive {
    /// The cluster the archive belongs to, as `system-identifier` records it.
    public var systemIdentifierFile: String { directory + "/system-identifier" }

    /// Why the archive's WAL and backups cannot be continued by the cluster `systemIdentifier`
    /// now writing at `position` on `timeline`, or nil: another cluster (a reset made a new
    /// one), or the same cluster behind the archive's end on the same timeline (a snapshot was
    /// restored: its WAL would overwrite the archive's later segments).
    public func continuityProblem(systemIdentifier: String, timeline: UInt32, position: LSN) -> String? {
        if let recorded = FileContents.text(systemIdentifierFile)?.trimmingWhitespace, !recorded.isEmpty, recorded != systemIdentifier {
            return "the cluster is a new one (system identifier \(systemIdentifier), the archive's is \(recorded))"
        }
        let files = walFiles().filter { $0.kind != .history && $0.timeline == timeline }
        if let newest = files.last, newest.segment > position.segment() {
            return "the cluster's WAL (\(position) on timeline \(timeline)) is behind the archive's (segment \(newest.name)): it was replaced by an older copy"
        }
        return nil
    }

    /// Moves the current WAL, base backups and restore points to `earlier/TIME/` (kept for
    /// the retention window, never overwritten) and records the cluster the archive now
    /// belongs to.
    public func startGeneration(systemIdentifier: String) throws(BackupError) {
        try prepare()
        let hasContent = !walFiles().isEmpty || !backups().isEmpty
        if hasContent {
            let earlier = directory + "/earlier"
            let aside = earlier + "/" + compactTime()
            do { try makeDirectories(aside) } catch { throw BackupError(.io, "cannot create \(aside): \(error)") }
            for name in ["wal", "receiving", "base", "restore-points", "system-identifier"] where access(directory + "/" + name, F_OK) == 0 {
                guard rename(directory + "/" + name, aside + "/" + name) == 0 else {
                    throw BackupError(.io, "cannot move \(directory)/\(name) to \(aside): \(String(cString: strerror(errno)))")
                }
            }
            try prepare()
        }
        do {
            try writeOwned(systemIdentifierFile, systemIdentifier + "\n")
        } catch {
            throw BackupError(.io, "cannot write \(systemIdentifierFile): \(error)")
        }
    }

    /// Removes earlier generations older than `window`.
    public func removeEarlierGenerations(olderThan horizon: Double) {
        let earlier = directory + "/earlier"
        for name in listDirectory(earlier) {
            var st = stat()
            guard stat(earlier + "/" + name, &st) == 0, Double(st.st_mtim.tv_sec) < horizon else { continue }
            try? removeTree(earlier + "/" + name)
        }
    }
}
