#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import SystemSupport
import ThreadSupport

extension BackupArchive {
    /// Takes a base backup of the running cluster into `base/ID` without stopping it, checks
    /// it with `pg_verifybackup`, and records it. A backup cut short stays a hidden
    /// `.partial-ID` directory and is removed by the next retention pass.
    ///
    /// Commands:
    /// - `pg_basebackup -D DIR -X stream -c fast -l amp-ID -h SOCKETDIR -p PORT -U USER -w`:
    ///   plain format (a restore is a copy, reflinked where the file system has them), the WAL
    ///   of the backup's own span streamed into it (so the backup is consistent on its own),
    ///   an immediate checkpoint; see <https://www.postgresql.org/docs/15/app-pgbasebackup.html>;
    /// - `pg_verifybackup DIR`: every file against `backup_manifest`, and the WAL it needs;
    ///   see <https://www.postgresql.org/docs/15/app-pgverifybackup.html>.
    ///
    /// With `parent` (PostgreSQL 17+, `summarize_wal = on`): `--incremental=PARENT/backup_manifest`,
    /// only the blocks changed since `parent`; a restore combines the chain with
    /// `pg_combinebackup` (<https://www.postgresql.org/docs/17/app-pgcombinebackup.html>).
    public func takeBaseBackup(handle: PostgresHandle, binaries: PostgresBinaries, account: ProcessCredentials?,
                               deadline: ContinuousClock.Instant, parent: BaseBackup? = nil) async throws(BackupError) -> BaseBackup {
        try prepare()
        let started = epochNow()
        var id = compactTime(started)
        if access(baseDirectory + "/" + id, F_OK) == 0 { id += "-\(getpid())" }
        let work = baseDirectory + "/.partial-" + id
        try? removeTree(work)
        var arguments = ["-D", work, "-X", "stream", "-c", "fast", "-l", "amp-\(id)", "-h", handle.socketDirectory, "-p", "\(handle.port)", "-U", handle.user, "-w"]
        if let parent { arguments.append("--incremental=\(path(of: parent))/backup_manifest") }
        let base = try await runTool(binaries.path("pg_basebackup"), arguments, application: "amp_basebackup", account: account, deadline: deadline)
        guard base.succeeded else {
            try? removeTree(work)
            throw BackupError(.tool, "pg_basebackup failed: \(Self.lastLine(base))")
        }
        let verify = try await runTool(binaries.path("pg_verifybackup"), ["-q", work], application: "amp_verifybackup", account: account, deadline: deadline)
        guard verify.succeeded else {
            try? removeTree(work)
            throw BackupError(.damaged, "pg_verifybackup found the new base backup unsound: \(Self.lastLine(verify)); nothing was kept")
        }
        guard let manifest = FileContents.text(work + "/backup_manifest", limit: 256 << 20),
              let range = Self.walRange(manifest: manifest) else {
            try? removeTree(work)
            throw BackupError(.tool, "the new base backup has no readable WAL range in its backup_manifest; nothing was kept")
        }
        let version = FileContents.text(work + "/PG_VERSION")?.trimmingWhitespace ?? ""
        let backup = BaseBackup(id: id, started: started, finished: epochNow(), timeline: range.timeline, startLSN: range.start, endLSN: range.end,
                                postgresVersion: version, sizeBytes: diskUsage(work), parent: parent?.id)
        do {
            try writeOwned(work + "/" + BaseBackup.recordName, backup.record)
        } catch {
            try? removeTree(work)
            throw BackupError(.io, "cannot record the new base backup: \(error)")
        }
        guard rename(work, baseDirectory + "/" + id) == 0 else {
            let reason = String(cString: strerror(errno))
            try? removeTree(work)
            throw BackupError(.io, "cannot move the new base backup into \(baseDirectory): \(reason)")
        }
        return backup
    }

    /// Marks `backup` as verified now.
    public func markVerified(_ backup: BaseBackup) {
        var b = backup
        b.verified = epochNow()
        try? writeOwned(path(of: backup) + "/" + BaseBackup.recordName, b.record)
    }

    /// amp's record of when `backup verify` last found each backup of a pgBackRest repository
    /// sound (`LABEL=TIME` lines; pgBackRest keeps no such record).
    public var repositoryVerifiedFile: String { directory + "/pgbackrest-verified" }

    /// Records that the pgBackRest backup `label` was verified now.
    public func markRepositoryBackupVerified(_ label: String) {
        var known = keyValueLines(FileContents.text(repositoryVerifiedFile, limit: 1 << 20) ?? "")
        known[label] = "\(epochNow())"
        if access(directory, F_OK) != 0 {
            try? makeDirectories(directory)
            if let owner, geteuid() == 0 { _ = lchown(directory, owner.uid, owner.gid) }
        }
        try? writeOwned(repositoryVerifiedFile, known.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined())
    }

    /// `backups` (of a pgBackRest repository) with the times `backup verify` found them sound.
    public func withRepositoryVerification(_ backups: [BaseBackup]) -> [BaseBackup] {
        let known = keyValueLines(FileContents.text(repositoryVerifiedFile, limit: 1 << 20) ?? "")
        return backups.map { b in
            var b = b
            b.verified = known[b.id].flatMap { Double($0) }
            return b
        }
    }

    /// The timeline and the WAL range of a `backup_manifest` (`"WAL-Ranges": [{ "Timeline": 1,
    /// "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]`); nil when it has none.
    static func walRange(manifest: String) -> (timeline: UInt32, start: LSN, end: LSN)? {
        guard let ranges = manifest.firstRange(of: "\"WAL-Ranges\"") else { return nil }
        let rest = manifest[ranges.upperBound...]
        func value(_ key: String) -> Substring? {
            guard let k = rest.firstRange(of: "\"\(key)\"") else { return nil }
            let after = rest[k.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "\"" }
            return after.prefix { $0 != "\"" && $0 != "," && $0 != "}" && $0 != " " }
        }
        guard let tli = value("Timeline").flatMap({ UInt32($0) }), let start = value("Start-LSN").flatMap({ LSN($0) }),
              let end = value("End-LSN").flatMap({ LSN($0) }) else { return nil }
        return (tli, start, end)
    }

    /// Runs one of PostgreSQL's tools as `account` until `deadline`.
    func runTool(_ path: String, _ arguments: [String], application: String, account: ProcessCredentials?,
                 deadline: ContinuousClock.Instant) async throws(BackupError) -> ToolOutput {
        try await runBackupTool(path, arguments, application: application, account: account, workingDirectory: directory, deadline: deadline,
                                limit: 64 << 10, install: "install the PostgreSQL client tools next to postgres")
    }

    static func lastLine(_ output: ToolOutput) -> String {
        let lines = output.text.split(separator: "\n").map { $0.trimmingWhitespace }.filter { !$0.isEmpty }
        return lines.last { $0.contains("error") || $0.contains("FATAL") } ?? lines.last ?? "no output"
    }
}

/// Runs a backup tool (a PostgreSQL client tool, pgbackrest) with amp's tool environment as
/// `account`, bounded by `deadline`, keeping `limit` bytes of its output; `install` says how to
/// get it when it cannot start.
public func runBackupTool(_ path: String, _ arguments: [String], application: String, account: ProcessCredentials?, workingDirectory: String,
                   deadline: ContinuousClock.Instant, limit: Int, install: String) async throws(BackupError) -> ToolOutput {
    do {
        let output = try await ChildProcess.run(SpawnConfiguration(
            executable: path, arguments: arguments, environment: WALArchiver.toolEnvironment(application: application),
            workingDirectory: workingDirectory, credentials: account), deadline: deadline, limit: limit)
        if output.status == nil { return ToolOutput(succeeded: false, text: "\(path) did not finish in time") }
        return ToolOutput(succeeded: output.succeeded, text: output.text.isEmpty ? "exit status \(output.status.map(String.init) ?? "none")" : output.text)
    } catch {
        throw BackupError(.tool, "cannot run \(path): \(error); \(install)")
    }
}

/// How a tool ended: whether it succeeded, and what it printed.
public struct ToolOutput: Sendable {
    public var succeeded: Bool
    public var text: String
}
