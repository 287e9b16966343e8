import AmpTuning
import SystemSupport

/// One setting of `[postgres]`, declared once: its key in `config.toml`, its environment
/// variable, its `ampd run` flag, the kind of value it takes (type and bounds), its default
/// and one line of documentation. The file, environment and flag parsers, the layer a value
/// came from (``ConfigurationLayers/source(of:)``), the flags' help, `ampd settings` and the
/// settings table of amp.toml(5) (checked by a test) all come from these declarations.
public struct Setting: Sendable, Hashable {
    /// The key in `[postgres]`.
    public let key: String
    /// The environment variable, if the setting has one.
    public let variable: String?
    /// The `ampd run` / `ampd settings` flag, if the setting has one.
    public let flag: String?
    public let kind: SettingKind
    /// The default, as the documentation says it.
    public let defaultText: String
    /// One line of documentation.
    public let summary: String
    /// Reads and writes the setting in a layer.
    let field: SettingField
    /// The table of `config.toml` that holds it: `postgres` or `backup`.
    public var table = "postgres"

    /// `table.key`, as messages and the documentation name it (`backup.window`).
    public var qualifiedKey: String { table + "." + key }

    public static func == (a: Setting, b: Setting) -> Bool { a.key == b.key && a.table == b.table }
    public func hash(into hasher: inout Hasher) { hasher.combine(table); hasher.combine(key) }

    /// Every setting, in the order the documentation lists them.
    public static let all: [Setting] = [
        binDir, locale, encoding, initdbArgs, postgresUser, socketDir, startTimeout, stopTimeout, templateCache, profile, memory,
        cpus, listen, tls, tlsCertificate, tlsKey, externalURL, seed, seedOutsideProject, audit, cron,
        backupArchive, backupTarget, backupWindow, backupMaxSize, backupSynchronous, backupInterval, backupSlotLimit,
        backupEngine, backupRepository, metricsListen, metricsExporterNames, poolEnabled, poolMode, poolSize, poolMaxClients, poolListen,
    ]

    /// The tables of `config.toml` amp reads.
    public static let tables = ["postgres", "backup", "metrics", "pool"]

    /// The setting of a key of `table`.
    public static func named(_ key: String, in table: String = "postgres") -> Setting? { all.first { $0.key == key && $0.table == table } }

    public static let binDir = Setting(
        key: "bin_dir", variable: "AMP_PG_BIN_DIR", flag: "--bin-dir", kind: .path, defaultText: "discovered (PATH, then Debian's and RPM layouts, newest first)",
        summary: "Directory of postgres and initdb", field: .text(\.binDir))
    public static let locale = Setting(
        key: "locale", variable: "AMP_PG_LOCALE", flag: "--locale", kind: .text, defaultText: "C",
        summary: "initdb --locale for a new cluster", field: .text(\.locale))
    public static let encoding = Setting(
        key: "encoding", variable: "AMP_PG_ENCODING", flag: "--encoding", kind: .text, defaultText: "UTF8",
        summary: "initdb --encoding for a new cluster", field: .text(\.encoding))
    public static let initdbArgs = Setting(
        key: "initdb_args", variable: "AMP_PG_INITDB_ARGS", flag: "--initdb-arg", kind: .arguments, defaultText: "none",
        summary: "Extra initdb arguments (the variable splits on white space; the flag repeats)", field: .list(\.initdbArgs))
    public static let postgresUser = Setting(
        key: "user", variable: "AMP_PG_USER", flag: "--postgres-user", kind: .text, defaultText: "the project directory's owner",
        summary: "Account PostgreSQL runs as when ampd runs as root", field: .text(\.postgresUser))
    public static let socketDir = Setting(
        key: "socket_dir", variable: "AMP_PG_SOCKET_DIR", flag: "--socket-dir", kind: .path, defaultText: ".amp/metadb, or a short private directory when that path is too long",
        summary: "Unix socket directory", field: .text(\.socketDir))
    public static let startTimeout = Setting(
        key: "start_timeout", variable: "AMP_PG_START_TIMEOUT", flag: "--start-timeout", kind: .duration, defaultText: "90s",
        summary: "Bound on initdb, start-up and the seed scripts", field: .duration(\.startTimeout))
    public static let stopTimeout = Setting(
        key: "stop_timeout", variable: "AMP_PG_STOP_TIMEOUT", flag: "--stop-timeout", kind: .duration, defaultText: "30s",
        summary: "Bound on the fast shutdown before SIGQUIT and SIGKILL", field: .duration(\.stopTimeout))
    public static let templateCache = Setting(
        key: "template_cache", variable: "AMP_PG_TEMPLATE_CACHE", flag: "--no-template-cache", kind: .boolean, defaultText: "true",
        summary: "Copy new clusters from a cached initdb template (the flag turns it off)", field: .boolean(\.templateCache))
    public static let profile = Setting(
        key: "profile", variable: "AMP_PG_PROFILE", flag: "--profile", kind: .profile, defaultText: "dev",
        summary: "dev (fast, non-durable) or durable (fsync, full page writes, checksums)", field: .profile)
    public static let memory = Setting(
        key: "memory", variable: "AMP_PG_MEMORY", flag: "--memory", kind: .memory, defaultText: "the cgroup's limit, else a share of RAM",
        summary: "Memory budget for sizing", field: .memory(\.memory))
    public static let cpus = Setting(
        key: "cpus", variable: "AMP_PG_CPUS", flag: "--cpus", kind: .cpus, defaultText: "the cgroup's quota, the affinity mask, the online CPUs",
        summary: "CPU count for sizing", field: .cpus)
    public static let listen = Setting(
        key: "listen", variable: "AMP_PG_LISTEN", flag: "--listen", kind: .listen, defaultText: "off",
        summary: "Also listen on TCP, with a SCRAM password", field: .listen(\.listen))
    public static let tls = Setting(
        key: "tls", variable: nil, flag: nil, kind: .boolean, defaultText: "false",
        summary: "TLS on the TCP listener (required for an address other machines can reach)", field: .boolean(\.tls))
    public static let tlsCertificate = Setting(
        key: "tls_cert", variable: nil, flag: nil, kind: .path, defaultText: "generated, self-signed, in .amp/network",
        summary: "TLS certificate (PEM) for the TCP listener", field: .text(\.tlsCertificate))
    public static let tlsKey = Setting(
        key: "tls_key", variable: nil, flag: nil, kind: .path, defaultText: "generated with the certificate",
        summary: "TLS private key (PEM) for tls_cert", field: .text(\.tlsKey))
    public static let externalURL = Setting(
        key: "url", variable: nil, flag: nil, kind: .url, defaultText: "none (a local cluster)",
        summary: "An external PostgreSQL server this project uses instead of a local cluster", field: .text(\.externalURL))
    public static let seed = Setting(
        key: "seed", variable: nil, flag: nil, kind: .seedPaths, defaultText: "none",
        summary: "SQL scripts run once, in order, when the cluster is created", field: .list(\.seed))
    public static let seedOutsideProject = Setting(
        key: "seed_outside_project", variable: nil, flag: nil, kind: .boolean, defaultText: "false",
        summary: "Allow seed scripts outside the project directory", field: .boolean(\.seedOutsideProject))

    public static let audit = Setting(
        key: "audit", variable: "AMP_PG_AUDIT", flag: nil, kind: .boolean, defaultText: "false",
        summary: "Preload pgaudit (postgresql-N-pgaudit) with pgaudit.log = 'ddl, role': DDL and role changes in the journal with PG_AUDIT= fields",
        field: .boolean(\.audit))
    public static let cron = Setting(
        key: "cron", variable: "AMP_PG_CRON", flag: nil, kind: .boolean, defaultText: "false",
        summary: "Preload pg_cron (postgresql-N-cron): jobs scheduled with cron.schedule() in the default database, run by background workers, logged",
        field: .boolean(\.cron))

    public static let backupArchive = Setting(
        key: "archive", variable: "AMP_BACKUP_ARCHIVE", flag: nil, kind: .boolean, defaultText: "true",
        summary: "Stream the cluster's WAL into the archive (pg_receivewal on a slot) and take base backups, for restores to any moment",
        field: .boolean(\.backupArchive), table: "backup")
    public static let backupTarget = Setting(
        key: "target", variable: "AMP_BACKUP_TARGET", flag: nil, kind: .path, defaultText: ".amp/backup",
        summary: "Directory of the archive (WAL and base backups); another disk or a network mount keeps them off the cluster's disk",
        field: .text(\.backupTarget), table: "backup")
    public static let backupWindow = Setting(
        key: "window", variable: "AMP_BACKUP_WINDOW", flag: nil, kind: .period, defaultText: "24h",
        summary: "How far back restores reach: older base backups and WAL are removed, oldest first",
        field: .duration(\.backupWindow), table: "backup")
    public static let backupMaxSize = Setting(
        key: "max_size", variable: "AMP_BACKUP_MAX_SIZE", flag: nil, kind: .memory, defaultText: "5GB",
        summary: "Bound on the archive's size: the oldest base backups and their WAL go first (the newest backup always stays)",
        field: .memory(\.backupMaxSize), table: "backup")
    public static let backupSynchronous = Setting(
        key: "synchronous", variable: "AMP_BACKUP_SYNCHRONOUS", flag: nil, kind: .boolean, defaultText: "false",
        summary: "Commits wait until their WAL is flushed in the archive (synchronous_standby_names); a stopped archiver then holds commits",
        field: .boolean(\.backupSynchronous), table: "backup")
    public static let backupInterval = Setting(
        key: "base_interval", variable: "AMP_BACKUP_BASE_INTERVAL", flag: nil, kind: .period, defaultText: "6h",
        summary: "Time between scheduled base backups (a restore replays at most this much WAL)",
        field: .duration(\.backupInterval), table: "backup")
    public static let backupSlotLimit = Setting(
        key: "max_slot_wal", variable: "AMP_BACKUP_MAX_SLOT_WAL", flag: nil, kind: .memory, defaultText: "1GB",
        summary: "WAL the cluster keeps for a stopped or lagging archiver (max_slot_wal_keep_size); beyond it the archive has a gap and a new base backup starts",
        field: .memory(\.backupSlotLimit), table: "backup")
    public static let backupEngine = Setting(
        key: "engine", variable: "AMP_BACKUP_ENGINE", flag: nil, kind: .engine, defaultText: "amp",
        summary: "Who keeps the backups: amp (pg_receivewal and pg_basebackup into target) or pgbackrest (archive_command and pgbackrest backup, to any repository pgBackRest supports, such as S3)",
        field: .engine, table: "backup")
    public static let backupRepository = Setting(
        key: "repository", variable: "AMP_BACKUP_REPOSITORY", flag: nil, kind: .options, defaultText: "a repository in target/pgbackrest",
        summary: "pgBackRest options for engine = pgbackrest, as [\"NAME=VALUE\", …] (repo1-type=s3, repo1-s3-bucket=…, stanza=…); secrets are better in PGBACKREST_* variables of ampd's environment",
        field: .list(\.backupRepository), table: "backup")

    public static let metricsListen = Setting(
        key: "listen", variable: "AMP_METRICS_LISTEN", flag: nil, kind: .listen, defaultText: "off",
        summary: "Serve the project's metrics for Prometheus at http://ADDRESS/metrics (\"auto\": 127.0.0.1:9187, postgres_exporter's port); ampctl metrics prints them without it",
        field: .listen(\.metricsListen), table: "metrics")

    public static let metricsExporterNames = Setting(
        key: "exporter_names", variable: "AMP_METRICS_EXPORTER_NAMES", flag: nil, kind: .boolean, defaultText: "true",
        summary: "Name PostgreSQL's metrics as postgres_exporter does (its dashboards work); false: Prometheus's rules (counters end in _total), which promtool check metrics accepts",
        field: .boolean(\.metricsExporterNames), table: "metrics")

    public static let poolEnabled = Setting(
        key: "enabled", variable: "AMP_POOL_ENABLED", flag: nil, kind: .boolean, defaultText: "false",
        summary: "Run PgBouncer (pgbouncer) in front of the cluster, supervised by ampd, on its own socket in the socket directory (ampctl url --pooled)",
        field: .boolean(\.poolEnabled), table: "pool")
    public static let poolMode = Setting(
        key: "mode", variable: "AMP_POOL_MODE", flag: nil, kind: .poolMode, defaultText: "transaction",
        summary: "transaction (a server connection per transaction: no session state, LISTEN, advisory locks or prepared statements across transactions) or session",
        field: .poolMode, table: "pool")
    public static let poolSize = Setting(
        key: "size", variable: "AMP_POOL_SIZE", flag: nil, kind: .count, defaultText: "4 per CPU, within max_connections less 10 kept for direct sessions",
        summary: "Server connections per database and user (default_pool_size, and max_db_connections)",
        field: .count(\.poolSize), table: "pool")
    public static let poolMaxClients = Setting(
        key: "max_clients", variable: "AMP_POOL_MAX_CLIENTS", flag: nil, kind: .count, defaultText: "what the descriptor limit allows, at most 10000",
        summary: "Client connections the pool accepts at once (max_client_conn); more are refused",
        field: .count(\.poolMaxClients), table: "pool")
    public static let poolListen = Setting(
        key: "listen", variable: "AMP_POOL_LISTEN", flag: nil, kind: .listen, defaultText: "off (the socket only)",
        summary: "Also take pooled connections on TCP, with [postgres]'s SCRAM password and TLS rules (\"auto\": 127.0.0.1 and a free port, kept)",
        field: .listen(\.poolListen), table: "pool")

    /// The server parameters' table, variables and flag (not a single value; documented with
    /// the others).
    public static let parametersKey = "parameters"
    public static let parameterVariablePrefix = "AMP_PG_PARAM_"
    public static let parameterFlag = "--set"

    // MARK: - parsing

    /// Parses the value of an environment variable or a flag (`text`); relative paths are
    /// taken from `baseDirectory`. The error is what the value must be.
    public func parse(text: String, baseDirectory: String) -> Result<SettingValue, SettingProblem> {
        switch kind {
        case .text: return .success(.text(text))
        case .path, .url:
            if kind == .url, let problem = ExternalURL.problem(text) { return .failure(.init(problem, phrase: true, echo: false)) }
            return .success(.text(kind == .url ? text : Self.absolute(text, baseDirectory)))
        case .arguments, .seedPaths: return .success(.list(text.split(whereSeparator: \.isWhitespace).map(String.init)))
        case .options:
            let items = text.split(whereSeparator: \.isWhitespace).map(String.init)
            if let bad = items.first(where: { BackupRepositoryOption.split($0) == nil }) { return .failure(.init("\(SettingBounds.optionsText); \"\(bad)\" is not", phrase: true)) }
            return .success(.list(items))
        case .engine: return BackupEngine(rawValue: text).map { .success(.engine($0)) } ?? .failure(.init(SettingBounds.engineText))
        case .poolMode: return PoolMode(rawValue: text).map { .success(.poolMode($0)) } ?? .failure(.init(SettingBounds.poolModeText))
        case .count:
            guard let n = Int(text), SettingBounds.count.contains(n) else { return .failure(.init(SettingBounds.countText)) }
            return .success(.count(n))
        case .duration: return parseTimeout(text).map { .success(.duration($0)) } ?? .failure(.init("a duration \(SettingBounds.timeoutText)"))
        case .period: return parsePeriod(text).map { .success(.duration($0)) } ?? .failure(.init("a duration \(SettingBounds.periodText)"))
        case .boolean:
            switch text.lowercased() {
            case "1", "true", "yes", "on": return .success(.boolean(true))
            case "0", "false", "no", "off": return .success(.boolean(false))
            default: return .failure(.init("a boolean (true or false)"))
            }
        case .profile: return Profile(rawValue: text).map { .success(.profile($0)) } ?? .failure(.init(SettingBounds.profileText))
        case .memory: return MemorySize(parsing: text).map { .success(.memory($0)) } ?? .failure(.init("a size \(MemorySize.rangeText)"))
        case .cpus:
            guard let n = Int(text), SettingBounds.cpus.contains(n) else { return .failure(.init(SettingBounds.cpusText)) }
            return .success(.cpus(n))
        case .listen: return ListenAddress(parsing: text).map { .success(.listen($0)) } ?? .failure(.init(ListenAddress.helpText))
        }
    }

    /// Parses a `config.toml` value; relative paths are taken from `baseDirectory`. The error
    /// says what the value must be and what it is.
    public func parse(toml value: TOMLValue, baseDirectory: String) -> Result<SettingValue, SettingProblem> {
        func must(_ expectation: String) -> Result<SettingValue, SettingProblem> {
            .failure(.init("\(expectation), not \(Self.describe(value))", must: true))
        }
        switch (kind, value) {
        case (.text, _), (.path, _), (.url, _):
            guard case .string(let s) = value, !s.isEmpty else { return must("a non-empty string") }
            return parse(text: s, baseDirectory: baseDirectory)
        case (.duration, .integer(let n)) where n > 0 && n <= 86_400: return .success(.duration(.seconds(n)))
        case (.duration, .string(let s)): return parseTimeout(s).map { .success(.duration($0)) } ?? must("a duration \(SettingBounds.timeoutText) (or whole seconds)")
        case (.duration, _): return must("a duration \(SettingBounds.timeoutText) (or whole seconds)")
        case (.period, .string(let s)): return parsePeriod(s).map { .success(.duration($0)) } ?? must("a duration \(SettingBounds.periodText)")
        case (.period, _): return must("a duration \(SettingBounds.periodText)")
        case (.boolean, .boolean(let b)): return .success(.boolean(b))
        case (.boolean, _): return must("true or false")
        case (.profile, .string(let s)) where Profile(rawValue: s) != nil: return parse(text: s, baseDirectory: baseDirectory)
        case (.profile, _): return must(SettingBounds.profileText)
        case (.engine, .string(let s)) where BackupEngine(rawValue: s) != nil: return parse(text: s, baseDirectory: baseDirectory)
        case (.engine, _): return must(SettingBounds.engineText)
        case (.poolMode, .string(let s)) where PoolMode(rawValue: s) != nil: return parse(text: s, baseDirectory: baseDirectory)
        case (.poolMode, _): return must(SettingBounds.poolModeText)
        case (.count, .integer(let n)) where SettingBounds.count.contains(n): return .success(.count(n))
        case (.count, _): return must(SettingBounds.countText)
        case (.options, .array(let items)):
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item, BackupRepositoryOption.split(s) != nil else {
                    return .failure(.init("must contain only \(SettingBounds.optionsText), found \(Self.describe(item))", phrase: true))
                }
                out.append(s)
            }
            return .success(.list(out))
        case (.options, _): return must("an array of strings such as [\"repo1-type=s3\", \"repo1-s3-bucket=backups\"]")
        case (.memory, .string(let s)): return MemorySize(parsing: s).map { .success(.memory($0)) } ?? must("a size \(MemorySize.rangeText)")
        case (.memory, .integer(let n)): return MemorySize(parsing: "\(n)").map { .success(.memory($0)) } ?? must("a size \(MemorySize.rangeText)")
        case (.memory, _): return must("a size \(MemorySize.rangeText)")
        case (.cpus, .integer(let n)) where SettingBounds.cpus.contains(n): return .success(.cpus(n))
        case (.cpus, _): return must(SettingBounds.cpusText)
        case (.listen, .string(let s)) where ListenAddress(parsing: s) != nil: return parse(text: s, baseDirectory: baseDirectory)
        case (.listen, _): return must(ListenAddress.helpText)
        case (.arguments, .array(let items)), (.seedPaths, .array(let items)):
            if kind == .seedPaths, items.count > ConfigLoader.maximumSeedScripts {
                return .failure(.init("has \(items.count) scripts; at most \(ConfigLoader.maximumSeedScripts)", phrase: true))
            }
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item, kind == .arguments || (!s.isEmpty && !s.utf8.contains(0)) else {
                    return .failure(.init("must contain only \(kind == .arguments ? "strings" : "non-empty paths"), found \(Self.describe(item))", phrase: true))
                }
                out.append(kind == .seedPaths ? Self.absolute(s, baseDirectory) : s)
            }
            return .success(.list(out))
        case (.arguments, _): return must("an array of strings such as [\"--data-checksums\"]")
        case (.seedPaths, _): return must("an array of paths such as [\"db/schema.sql\", \"db/seed.sql\"]")
        }
    }

    /// Sets the parsed value in `layer`.
    public func store(_ value: SettingValue, in layer: inout SettingsLayer) { field.store(value, in: &layer) }

    /// Whether `layer` sets this setting.
    public func isSet(in layer: SettingsLayer) -> Bool { field.isSet(in: layer) }

    /// The value in effect, as text (`ampd settings`).
    public func display(_ settings: AmpSettings) -> String? { field.display(settings) }

    static func absolute(_ path: String, _ base: String) -> String { normalizePath(path.hasPrefix("/") ? path : base + "/" + path) }

    static func describe(_ value: TOMLValue) -> String {
        switch value {
        case .string(let s): return "the string \"\(s)\""
        case .integer(let n): return "the integer \(n)"
        case .float(let d): return "the float \(d)"
        case .boolean(let b): return "the boolean \(b)"
        default: return "a \(value.typeName)"
        }
    }
}

/// The kinds of value a setting takes, each with its parser and bounds.
public enum SettingKind: Sendable, Equatable {
    case text, path, url, duration, period, boolean, profile, memory, cpus, listen, arguments, seedPaths, engine, options, poolMode, count

    /// The word the documentation and `--help` use for a value of this kind.
    public var valueName: String {
        switch self {
        case .text: "TEXT"
        case .path: "PATH"
        case .url: "URL"
        case .duration, .period: "DURATION"
        case .boolean: "BOOL"
        case .profile: "PROFILE"
        case .memory: "SIZE"
        case .cpus: "N"
        case .listen: "ADDRESS"
        case .arguments: "ARG"
        case .seedPaths: "PATHS"
        case .engine: "ENGINE"
        case .options: "OPTIONS"
        case .poolMode: "MODE"
        case .count: "N"
        }
    }
}

/// A parsed value of a setting.
public enum SettingValue: Sendable, Equatable {
    case text(String)
    case list([String])
    case duration(Duration)
    case boolean(Bool)
    case profile(Profile)
    case engine(BackupEngine)
    case poolMode(PoolMode)
    case count(Int)
    case memory(MemorySize)
    case cpus(Int)
    case listen(ListenAddress)
}

/// Why a value was refused: what it must be (`a duration from 100ms to 24h, …`), or (for the
/// file) the whole phrase `must be …, not …`.
public struct SettingProblem: Error, Sendable, Equatable {
    public var expectation: String
    /// Whether ``expectation`` is already a whole phrase (`must be X, not Y`, `has N scripts`).
    public var phrase: Bool
    /// Whether the value may be repeated in the message (never for a URL: it may hold a password).
    public var echo: Bool

    init(_ expectation: String, must: Bool = false, phrase: Bool = false, echo: Bool = true) {
        self.expectation = must ? "must be " + expectation : expectation
        self.phrase = must || phrase
        self.echo = echo
    }
}

/// How a setting reads and writes its field of a layer and of the settings.
enum SettingField: Sendable {
    case text(WritableKeyPath<SettingsLayer, String?> & Sendable)
    case list(WritableKeyPath<SettingsLayer, [String]?> & Sendable)
    case duration(WritableKeyPath<SettingsLayer, Duration?> & Sendable)
    case boolean(WritableKeyPath<SettingsLayer, Bool?> & Sendable)
    case memory(WritableKeyPath<SettingsLayer, MemorySize?> & Sendable)
    case listen(WritableKeyPath<SettingsLayer, ListenAddress?> & Sendable)
    case count(WritableKeyPath<SettingsLayer, Int?> & Sendable)
    case profile, cpus, engine, poolMode

    func store(_ value: SettingValue, in layer: inout SettingsLayer) {
        switch (self, value) {
        case (.text(let k), .text(let v)): layer[keyPath: k] = v
        case (.list(let k), .list(let v)): layer[keyPath: k] = v
        case (.duration(let k), .duration(let v)): layer[keyPath: k] = v
        case (.boolean(let k), .boolean(let v)): layer[keyPath: k] = v
        case (.profile, .profile(let v)): layer.profile = v
        case (.engine, .engine(let v)): layer.backupEngine = v
        case (.poolMode, .poolMode(let v)): layer.poolMode = v
        case (.count(let k), .count(let v)): layer[keyPath: k] = v
        case (.memory(let k), .memory(let v)): layer[keyPath: k] = v
        case (.cpus, .cpus(let v)): layer.cpus = v
        case (.listen(let k), .listen(let v)): layer[keyPath: k] = v
        default: break
        }
    }

    func isSet(in layer: SettingsLayer) -> Bool {
        switch self {
        case .text(let k): layer[keyPath: k] != nil
        case .list(let k): layer[keyPath: k] != nil
        case .duration(let k): layer[keyPath: k] != nil
        case .boolean(let k): layer[keyPath: k] != nil
        case .profile: layer.profile != nil
        case .engine: layer.backupEngine != nil
        case .poolMode: layer.poolMode != nil
        case .count(let k): layer[keyPath: k] != nil
        case .memory(let k): layer[keyPath: k] != nil
        case .cpus: layer.cpus != nil
        case .listen(let k): layer[keyPath: k] != nil
        }
    }

    /// The value in effect (a layer holding every effective value: ``AmpSettings/asLayer``).
    func display(_ settings: AmpSettings) -> String? {
        let layer = settings.asLayer
        switch self {
        case .text(let k): return layer[keyPath: k]
        case .list(let k): return layer[keyPath: k].map { $0.joined(separator: " ") }
        case .duration(let k): return layer[keyPath: k].map(formatDuration)
        case .boolean(let k): return layer[keyPath: k].map { $0 ? "true" : "false" }
        case .profile: return layer.profile?.rawValue
        case .engine: return layer.backupEngine?.rawValue
        case .poolMode: return layer.poolMode?.rawValue
        case .count(let k): return layer[keyPath: k].map(String.init)
        case .memory(let k): return layer[keyPath: k]?.description
        case .cpus: return layer.cpus.map(String.init)
        case .listen(let k): return layer[keyPath: k]?.description
        }
    }
}

/// `90s`, `500ms`, `2min`.
func formatDuration(_ d: Duration) -> String {
    let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    if ms % 86_400_000 == 0 && ms >= 86_400_000 { return "\(ms / 86_400_000)d" }
    if ms % 3_600_000 == 0 && ms >= 3_600_000 { return "\(ms / 3_600_000)h" }
    if ms % 60_000 == 0 && ms >= 60_000 { return "\(ms / 60_000)min" }
    if ms % 1000 == 0 { return "\(ms / 1000)s" }
    return "\(ms)ms"
}

extension Setting {
    /// The first line of the generated settings table in amp.toml(5).
    public static let manReferenceBegin = ".\\\" BEGIN generated by `make man` from Sources/AmpConfig/SettingDescriptors.swift"
    /// Its last line.
    public static let manReferenceEnd = ".\\\" END generated"

    /// The settings table of amp.toml(5), in roff: one entry per setting with its key, variable,
    /// flag, default and summary (`make man` puts it in the page; a test fails when it drifts).
    public static func manReference() -> String {
        func roff(_ s: String) -> String { s.replacing("\\", with: "\\e").replacing("-", with: "\\-").replacing("\"", with: "\\(dq") }
        var lines = [manReferenceBegin, ".SS \"Every setting\"", "Key, environment variable, flag of", ".BR \"ampd run\" ,", "default, and what it does."]
        for s in all {
            lines.append(".TP")
            lines.append(".B " + (s.table == "postgres" ? s.key : s.qualifiedKey))
            var how: [String] = []
            if let v = s.variable { how.append(v) }
            if let f = s.flag { how.append(s.kind == .boolean ? f : f + " " + s.kind.valueName) }
            let origin = how.isEmpty ? "config.toml only" : how.joined(separator: ", ")
            lines.append(roff("\(origin); default: \(s.defaultText)."))
            lines.append(roff(s.summary + "."))
        }
        lines.append(".TP")
        lines.append(".B " + parametersKey)
        lines.append(roff("\(parameterVariablePrefix)<name>, \(parameterFlag) NAME=VALUE (-c); server parameters, see [postgres.parameters]."))
        lines.append(manReferenceEnd)
        return lines.joined(separator: "\n") + "\n"
    }
}
