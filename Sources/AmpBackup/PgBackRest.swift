#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import SystemSupport
import Varlink

/// The pgBackRest engine of one project (`[backup] engine = "pgbackrest"`): its configuration
/// file, its stanza, and the commands amp runs with it. PostgreSQL's `archive_command` pushes
/// each finished WAL segment (``archiveCommand``); ampd creates the stanza, takes the backups
/// (full when none is recent enough, else incremental) and reads `info`; restores and
/// verification go through ``recover(to:point:into:binaries:version:timeout:archiving:progress:)``.
///
/// Everything pgBackRest needs is in one generated file, `WORK/pgbackrest.conf` (0600, the
/// cluster's account): amp's defaults, then `[backup] repository`, then `PGBACKREST_*`
/// variables of ampd's environment (later wins), and the stanza's `pg1-*` options.
/// See <https://pgbackrest.org/configuration.html> and <https://pgbackrest.org/command.html>.
public struct PgBackRest: Sendable {
    /// One option of the `[global]` section.
    public struct Option: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public let executable: String
    /// `.amp/pgbackrest`: the configuration file and pgBackRest's lock, log and spool directories.
    public let workDirectory: String
    public let stanza: String
    /// The cluster's data directory (`pg1-path`).
    public let dataDirectory: String
    /// The options of `[global]` after amp's defaults (see ``options(repository:environment:)``).
    public let options: [Option]
    /// The account the commands run as (ampd as root), nil: this process's.
    public var account: ProcessCredentials?

    public var configFile: String { workDirectory + "/pgbackrest.conf" }

    public init(executable: String, workDirectory: String, stanza: String, dataDirectory: String, options: [Option], account: ProcessCredentials?) {
        self.executable = executable
        self.workDirectory = workDirectory
        self.stanza = stanza
        self.dataDirectory = dataDirectory
        self.options = options
        self.account = account
    }

    /// The engine of a project: `AMPDIR/pgbackrest` as its work directory, the repository in
    /// `target/pgbackrest` unless `repository` names one, the stanza named for the project
    /// unless `repository` names one. The error says what to install or change.
    public static func forProject(
        ampDirectory: String, dataDirectory: String, target: String, repository: [String], window: Double, projectName: String, environment: [String: String]
    ) throws(BackupError) -> PgBackRest {
        guard let executable = locate(searchPath: environment["PATH"]) else {
            throw BackupError(.tool, "[backup] engine = \"pgbackrest\" needs pgBackRest, which is not installed: apt install pgbackrest (or set engine = \"amp\")")
        }
        let work = ampDirectory + "/pgbackrest"
        let (options, stanza) = Self.options(repository: repository, environment: environment, workDirectory: work, defaultRepository: target + "/pgbackrest",
                                             window: window, defaultStanza: projectName)
        let engine = PgBackRest(executable: executable, workDirectory: work, stanza: stanza, dataDirectory: dataDirectory, options: options, account: nil)
        if let problem = engine.commandProblem { throw BackupError(.usage, "[backup] engine = \"pgbackrest\": \(problem)") }
        return engine
    }

    /// `pgbackrest` on `searchPath`, else `/usr/bin/pgbackrest`; nil when there is none.
    public static func locate(searchPath: String?) -> String? { findProgram("pgbackrest", searchPath: searchPath, fallbacks: ["/usr/bin"]) }

    /// The `[global]` options: amp's defaults (a repository in `defaultRepository` unless
    /// the user names one, retention by time from the window, lz4, fast checkpoints, the work
    /// directories), then `[backup] repository`, then `PGBACKREST_*` variables
    /// (`PGBACKREST_REPO1_S3_KEY_SECRET` is `repo1-s3-key-secret`), each later one replacing an
    /// earlier one of the same name. A `stanza` option names the stanza instead (default:
    /// `defaultStanza`, the project's name). Pure.
    public static func options(
        repository: [String], environment: [String: String], workDirectory: String, defaultRepository: String, window: Double, defaultStanza: String
    ) -> (options: [Option], stanza: String) {
        var given: [Option] = repository.compactMap { item in
            guard let eq = item.firstIndex(of: "=") else { return nil }
            return Option(name: String(item[..<eq]), value: String(item[item.index(after: eq)...]))
        }
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) where key.hasPrefix("PGBACKREST_") && !value.isEmpty && !value.contains("\n") {
            let name = key.dropFirst("PGBACKREST_".count).lowercased().replacing("_", with: "-")
            // pgBackRest's own ways to point elsewhere are amp's to set.
            guard !["config", "config-path", "config-include-path", "stanza"].contains(name) else { continue }
            given.append(Option(name: name, value: value))
        }
        let stanza = given.last { $0.name == "stanza" }?.value ?? defaultStanza
        given.removeAll { $0.name == "stanza" }
        let days = max(1, Int((window / 86_400).rounded(.up)))
        let namesRepository = given.contains { $0.name == "repo1-type" || $0.name == "repo1-path" }
        var defaults: [Option] = namesRepository ? [] : [Option(name: "repo1-path", value: defaultRepository)]
        defaults += [
            Option(name: "repo1-retention-full-type", value: "time"), Option(name: "repo1-retention-full", value: "\(days)"),
            Option(name: "compress-type", value: "lz4"), Option(name: "start-fast", value: "y"),
            Option(name: "lock-path", value: workDirectory + "/lock"), Option(name: "log-path", value: workDirectory + "/log"),
            Option(name: "spool-path", value: workDirectory + "/spool"), Option(name: "log-level-file", value: "off"),
        ]
        var out: [Option] = []
        for option in defaults + given {
            out.removeAll { $0.name == option.name }
            out.append(option)
        }
        return (out, stanza)
    }

    /// The configuration file's text; the `pg1-*` socket options only when the server runs.
    public func configuration(socketDirectory: String?, port: Int?, user: String?) -> String {
        var lines = ["# Written by ampd from [backup] in config.toml; changes here are replaced.", "[global]"]
        lines += options.map { "\($0.name)=\($0.value)" }
        lines += ["", "[\(stanza)]", "pg1-path=\(dataDirectory)"]
        if let socketDirectory { lines.append("pg1-socket-path=\(socketDirectory)") }
        if let port { lines.append("pg1-port=\(port)") }
        if let user { lines.append("pg1-user=\(user)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes ``configuration(socketDirectory:port:user:)`` and makes the work directories
    /// (0700; the account's as root).
    public func writeConfiguration(socketDirectory: String? = nil, port: Int? = nil, user: String? = nil) throws(BackupError) {
        for dir in [workDirectory, workDirectory + "/lock", workDirectory + "/log", workDirectory + "/spool"] {
            do { try makeDirectories(dir) } catch { throw BackupError(.io, "cannot create \(dir): \(error)") }
            if let account, geteuid() == 0 { _ = lchown(dir, account.uid, account.gid) }
        }
        do {
            try writeFileAtomically(configFile, Array(configuration(socketDirectory: socketDirectory, port: port, user: user).utf8), mode: 0o600)
        } catch {
            throw BackupError(.io, "cannot write \(configFile): \(error)")
        }
        if let account, geteuid() == 0 { _ = lchown(configFile, account.uid, account.gid) }
    }

    /// amp's record that the repository holds a backup of this project's cluster (the label of
    /// the newest one amp took): with it, a missing data directory is one to restore, not to
    /// make afresh.
    public var backedUpFile: String { workDirectory + "/backed-up" }

    /// Records that backup `label` is in the repository.
    public func recordBackup(_ label: String) {
        try? writeFileAtomically(backedUpFile, Array((label + "\n").utf8), mode: 0o600)
        if let account, geteuid() == 0 { _ = lchown(backedUpFile, account.uid, account.gid) }
    }

    /// Why the paths cannot go into `archive_command` (a single quote or a line break), or nil.
    public var commandProblem: String? {
        [executable, configFile, stanza].first { $0.contains("'") || $0.contains("\n") }
            .map { "\($0) contains a quote or a line break, which archive_command cannot carry; move the project or set another stanza" }
    }

    /// PostgreSQL's `archive_command`: `'pgbackrest' --config='CONF' --stanza='NAME' archive-push %p`.
    /// See <https://www.postgresql.org/docs/15/continuous-archiving.html#BACKUP-ARCHIVING-WAL>.
    public var archiveCommand: String {
        "'\(executable.replacing("%", with: "%%"))' --config='\(configFile.replacing("%", with: "%%"))' --stanza='\(stanza.replacing("%", with: "%%"))' archive-push %p"
    }

    // MARK: - commands

    /// Runs `pgbackrest --config=CONF --stanza=NAME ARGUMENTS` as the account.
    func run(_ arguments: [String], deadline: ContinuousClock.Instant) async throws(BackupError) -> ToolOutput {
        try await runBackupTool(executable, ["--config=\(configFile)", "--stanza=\(stanza)"] + arguments, application: "amp_pgbackrest", account: account,
                                workingDirectory: workDirectory, deadline: deadline, limit: 4 << 20, install: "install pgBackRest (apt install pgbackrest)")
    }

    private func required(_ arguments: [String], _ what: String, timeout: Duration) async throws(BackupError) -> String {
        let out = try await run(arguments, deadline: .now + timeout)
        guard out.succeeded else { throw BackupError(.tool, "pgbackrest \(what) failed: \(Self.cause(out.text))") }
        return out.text
    }

    /// pgBackRest's `ERROR: [NNN]: …` line (the first), else the last line.
    static func cause(_ text: String) -> String {
        let lines = text.split(separator: "\n").map { $0.trimmingWhitespace }.filter { !$0.isEmpty }
        return lines.first { $0.contains("ERROR:") } ?? lines.last ?? "no output"
    }

    /// `stanza-create`: makes the stanza in the repository, or checks the one there belongs
    /// to this cluster.
    public func createStanza() async throws(BackupError) {
        _ = try await required(["stanza-create"], "stanza-create", timeout: .seconds(300))
    }

    /// `check`: switches to a new WAL segment and waits until it is in the repository (every
    /// commit so far is then restorable).
    public func check() async throws(BackupError) {
        _ = try await required(["check"], "check", timeout: .seconds(120))
    }

    /// `backup --type=full|incr` (with `start-fast`): incremental backups hold the files
    /// changed since the previous backup.
    public func backup(full: Bool, timeout: Duration) async throws(BackupError) {
        _ = try await required(["backup", "--type=\(full ? "full" : "incr")"], "backup", timeout: timeout)
    }

    /// `verify`: every file of every backup and all WAL in the repository against its checksum.
    public func verify(timeout: Duration) async throws(BackupError) {
        let out = try await run(["verify"], deadline: .now + timeout)
        guard out.succeeded else { throw BackupError(.damaged, "pgbackrest verify found damage: \(Self.cause(out.text))") }
    }

    /// `info --output=json`.
    public func info() async throws(BackupError) -> PgBackRestInfo {
        try PgBackRestInfo.parse(try await required(["info", "--output=json"], "info", timeout: .seconds(120)), stanza: stanza).get()
    }

    // MARK: - restore

    /// The backup a restore to `target` begins from: the newest one finished by then (for a
    /// restore point, the newest that ended before it; for `latest`, the newest). Pure.
    public static func choose(_ backups: [BaseBackup], for target: RestoreTarget, point: RestorePoint?) -> Result<BaseBackup, BackupError> {
        guard let newest = backups.last else {
            return .failure(BackupError(.notRestorable, "the pgBackRest repository has no backup yet; take one with `ampctl backup create`"))
        }
        switch target {
        case .latest: return .success(newest)
        case .time(let t):
            guard let b = backups.last(where: { $0.finished <= t }) else {
                return .failure(BackupError(.notRestorable, "\(isoTime(t)) is before the earliest restorable moment, \(isoTime(backups[0].finished)) (the oldest backup); choose a later time (`ampctl backup list` shows the range)"))
            }
            return .success(b)
        case .point(let name):
            guard let point else { return .success(newest) }
            guard let b = backups.last(where: { $0.endLSN <= point.lsn }) else {
                return .failure(BackupError(.notRestorable, "restore point \(name) (\(isoTime(point.time))) is older than every kept backup; it can no longer be restored"))
            }
            return .success(b)
        }
    }

    /// The arguments of `pgbackrest restore` for `target` into `dataDirectory` from `backup`.
    /// Pure. `--type=time|name` sets `recovery_target_time`/`_name` with
    /// `--target-action=promote`; `--type=default` (for `latest`) replays to the end of the
    /// archive and promotes.
    static func restoreArguments(_ target: RestoreTarget, point: RestorePoint?, backup: String, into dataDirectory: String) -> [String] {
        var args = ["restore", "--pg1-path=\(dataDirectory)", "--set=\(backup)"]
        switch target {
        case .latest: args.append("--type=default")
        case .time(let t): args += ["--type=time", "--target=\(BackupArchive.postgresTime(t))", "--target-action=promote"]
        case .point(let name):
            args += ["--type=name", "--target=\(name)", "--target-action=promote"]
            if let point { args.append("--target-timeline=\(point.timeline)") }
        }
        return args
    }

    /// Restores the repository to `target` into the new directory `dataDirectory`
    /// (`pgbackrest restore`), then replays it there on a private socket until it is promoted,
    /// and stops it. With `archiving` the replay pushes what it writes (the new timeline's
    /// history) to the repository, as the cluster that takes its place must; a scratch copy
    /// (verify) archives nothing. A failure removes `dataDirectory`.
    public func recover(
        to target: RestoreTarget, point: RestorePoint?, into dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion,
        timeout: Duration, archiving: Bool, progress: @escaping @Sendable (_ replayed: UInt64, _ total: UInt64) -> Void = { _, _ in }
    ) async throws(BackupError) -> RecoveredCluster {
        let backups = try await info().backups
        let backup = try Self.choose(backups, for: target, point: point).get()
        let first = try await replay(backup, target: target, point: point, into: dataDirectory, binaries: binaries, version: version,
                                     timeout: timeout, archiving: archiving, progress: progress)
        switch first {
        case .success(let recovered): return recovered
        case .failure(let notReached):
            // A time after the last transaction: the archive's end is the moment asked for.
            guard case .time = target else { throw notReached }
            return try await replay(backup, target: .latest, point: nil, into: dataDirectory, binaries: binaries, version: version,
                                    timeout: timeout, archiving: archiving, progress: progress).get()
        }
    }

    private func replay(
        _ backup: BaseBackup, target: RestoreTarget, point: RestorePoint?, into dataDirectory: String, binaries: PostgresBinaries,
        version: PostgresVersion, timeout: Duration, archiving: Bool, progress: @escaping @Sendable (UInt64, UInt64) -> Void
    ) async throws(BackupError) -> Result<RecoveredCluster, BackupError> {
        try? removeTree(dataDirectory)
        do { try makeDirectories(dataDirectory) } catch { throw BackupError(.io, "cannot create \(dataDirectory): \(error)") }
        if let account, geteuid() == 0 { _ = lchown(dataDirectory, account.uid, account.gid) }
        let out = try await run(Self.restoreArguments(target, point: point, backup: backup.id, into: dataDirectory), deadline: .now + timeout)
        guard out.succeeded else {
            try? removeTree(dataDirectory)
            throw BackupError(.tool, "pgbackrest restore of \(backup.id) failed: \(Self.cause(out.text))")
        }
        // The socket lock files of the server the backup was taken from.
        for name in listDirectory(dataDirectory) where name.hasPrefix(".s.PGSQL.") { unlink(dataDirectory + "/" + name) }
        // pgBackRest wrote restore_command and the target into postgresql.auto.conf; the rest
        // comes on the command line (which wins over that file).
        var parameters: [(String, String)] = [
            ("hot_standby", "off"), ("synchronous_standby_names", ""), ("fsync", "off"),
            ("archive_mode", archiving ? "on" : "off"), ("archive_command", archiving ? archiveCommand : ""),
        ]
        if version.majorNumber >= 15 { parameters.append(("log_startup_progress_interval", "1s")) }
        return try await Recovery.run(dataDirectory: dataDirectory, parameters: parameters, target: target, backup: backup.id, binaries: binaries,
                                      version: version, account: account, timeout: timeout, start: backup.endLSN.value, total: 0, progress: progress)
    }
}

/// What `pgbackrest info --output=json` says of one stanza: its backups (as amp's
/// ``BaseBackup``, the label as the ID), their kinds, the WAL the repository holds and its
/// status.
public struct PgBackRestInfo: Sendable, Equatable {
    public var backups: [BaseBackup]
    /// `full`, `diff` or `incr`, by label.
    public var kinds: [String: String]
    /// The oldest and newest WAL segments in the repository.
    public var walMin: String?
    public var walMax: String?
    /// pgBackRest's status code and message (0 `ok`; 2 `no valid backups`).
    public var statusCode: Int64
    public var statusMessage: String

    /// Parses the JSON of `info --output=json` for `stanza`; the error names what is missing.
    public static func parse(_ text: String, stanza: String) -> Result<PgBackRestInfo, BackupError> {
        func bad(_ what: String) -> Result<PgBackRestInfo, BackupError> {
            .failure(BackupError(.tool, "pgbackrest info printed what amp cannot read (\(what)); run `pgbackrest info` to see it"))
        }
        let value: JSONValue
        do { value = try JSONParser.parse(text) } catch { return bad("\(error)") }
        guard let entry = value.arrayValue?.compactMap(\.objectValue).first(where: { $0["name"]?.stringValue == stanza }) else {
            return bad("no stanza \(stanza)")
        }
        let status = entry["status"]?.objectValue
        var versions: [Int64: String] = [:]
        for db in entry["db"]?.arrayValue ?? [] {
            if let o = db.objectValue, let id = o["id"]?.intValue, let v = o["version"]?.stringValue { versions[id] = v }
        }
        var backups: [BaseBackup] = []
        var kinds: [String: String] = [:]
        for item in entry["backup"]?.arrayValue ?? [] {
            guard let b = item.objectValue, let label = b["label"]?.stringValue,
                  let started = b["timestamp"]?.objectValue?["start"]?.doubleValue, let finished = b["timestamp"]?.objectValue?["stop"]?.doubleValue,
                  let start = b["lsn"]?.objectValue?["start"]?.stringValue.flatMap({ LSN($0) }),
                  let stop = b["lsn"]?.objectValue?["stop"]?.stringValue.flatMap({ LSN($0) }) else { return bad("a backup without label, times or LSNs") }
            if b["error"]?.boolValue == true { continue }
            let segment = b["archive"]?.objectValue?["start"]?.stringValue ?? ""
            let timeline = UInt32(segment.prefix(8), radix: 16) ?? 1
            let version = b["database"]?.objectValue?["id"]?.intValue.flatMap { versions[$0] } ?? ""
            let size = b["info"]?.objectValue?["repository"]?.objectValue?["delta"]?.intValue ?? 0
            backups.append(BaseBackup(id: label, started: started, finished: finished, timeline: timeline, startLSN: start, endLSN: stop,
                                      postgresVersion: version, sizeBytes: UInt64(max(0, size)), parent: b["prior"]?.stringValue))
            kinds[label] = b["type"]?.stringValue ?? "full"
        }
        let archive = entry["archive"]?.arrayValue?.compactMap(\.objectValue) ?? []
        return .success(PgBackRestInfo(
            backups: backups.sorted { $0.finished < $1.finished }, kinds: kinds,
            walMin: archive.compactMap { $0["min"]?.stringValue }.min(), walMax: archive.compactMap { $0["max"]?.stringValue }.max(),
            statusCode: status?["code"]?.intValue ?? -1, statusMessage: status?["message"]?.stringValue ?? "unknown"))
    }
}
