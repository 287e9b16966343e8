import AmpTuning
import SystemSupport

/// Everything that shapes the managed PostgreSQL of one amp dir.
///
/// Precedence, lowest first: built-in defaults < `config.toml` < environment < command line.
/// Server parameters merge by name across the layers (a later layer wins per parameter).
public struct AmpSettings: Sendable, Equatable {
    /// Directory of `postgres` and `initdb`; `nil`: discover (PATH, then distribution layouts).
    public var binDir: String?
    /// `initdb --locale`.
    public var locale = "C"
    /// `initdb --encoding`.
    public var encoding = "UTF8"
    /// Extra `initdb` arguments.
    public var initdbArgs: [String] = []
    /// SQL scripts run once, in order, when a cluster is created (absolute paths).
    public var seed: [String] = []
    /// Whether seed scripts may lie outside the project directory (`seed_outside_project`).
    public var seedOutsideProject = false
    /// Server parameters (`postgres -c name=value`), in order.
    public var parameters: [Parameter] = []
    /// The account PostgreSQL runs as when ampd runs as root.
    public var postgresUser: String?
    /// Socket directory; `nil`: `metadb/`, or a short private directory when that is too long.
    public var socketDir: String?
    /// Bound on initdb plus start-up.
    public var startTimeout: Duration = .seconds(90)
    /// Bound on the fast shutdown before SIGQUIT/SIGKILL.
    public var stopTimeout: Duration = .seconds(30)
    /// Whether new clusters are copied from a cached template instead of running initdb.
    public var templateCache = true
    /// What the server is for: `dev` (default) or `durable`.
    public var profile = Profile.dev
    /// An explicit memory budget (e.g. `2GB`), else detected.
    public var memory: MemorySize?
    /// An explicit CPU count, else detected.
    public var cpus: Int?
    /// Whether the local cluster also listens on TCP, and where (off by default).
    public var listen: ListenAddress?
    /// TLS on the TCP listener (required for a non-loopback address).
    public var tls = false
    /// The TLS certificate and key (PEM); nil: generated, self-signed, in `.amp/network/`.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// An external server this project uses instead of a local cluster (no password in it).
    public var externalURL: String?
    /// `[postgres] audit`: pgaudit preloaded (`pgaudit.log = 'ddl, role'`).
    public var audit = false
    /// `[postgres] cron`: pg_cron preloaded, its jobs in the default database.
    public var cron = false
    /// `[backup] archive`: the continuous archive and base backups.
    public var backupArchive = true
    /// `[backup] target`: the archive's directory; nil: `.amp/backup`.
    public var backupTarget: String?
    /// `[backup] window`: how far back restores reach.
    public var backupWindow: Duration = .seconds(86_400)
    /// `[backup] max_size`: bound on the archive's size.
    public var backupMaxSize = MemorySize(parsing: "5GB") ?? MemorySize.minimum
    /// `[backup] synchronous`: commits wait for the archive.
    public var backupSynchronous = false
    /// `[backup] base_interval`: time between scheduled base backups.
    public var backupInterval: Duration = .seconds(6 * 3600)
    /// `[backup] max_slot_wal`: WAL kept for a stopped archiver (max_slot_wal_keep_size).
    public var backupSlotLimit = MemorySize(parsing: "1GB") ?? MemorySize.minimum
    /// `[backup] engine`: amp's own archive, or pgBackRest.
    public var backupEngine = BackupEngine.amp
    /// `[metrics] listen`: where Prometheus scrapes the project's metrics (nil: no listener).
    public var metricsListen: ListenAddress?
    /// `[metrics] exporter_names`: postgres_exporter's names (true) or Prometheus's rules.
    public var metricsExporterNames = true
    /// `[backup] repository`: pgBackRest options (`name=value`) for `engine = "pgbackrest"`.
    public var backupRepository: [String] = []
    /// `[pool] enabled`: PgBouncer in front of the cluster.
    public var poolEnabled = false
    /// `[pool] mode`: transaction or session pooling.
    public var poolMode = PoolMode.transaction
    /// `[pool] size`: server connections per database and user; nil: from the budget.
    public var poolSize: Int?
    /// `[pool] max_clients`: client connections at once; nil: from the descriptor limit.
    public var poolMaxClients: Int?
    /// `[pool] listen`: the pool's TCP listener (nil: its socket only).
    public var poolListen: ListenAddress?

    public struct Parameter: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init() {}

    /// Every value in effect, as a layer (``Setting/display(_:)``).
    public var asLayer: SettingsLayer {
        var l = SettingsLayer(
            binDir: binDir, locale: locale, encoding: encoding, initdbArgs: initdbArgs, postgresUser: postgresUser, socketDir: socketDir,
            startTimeout: startTimeout, stopTimeout: stopTimeout, templateCache: templateCache, profile: profile, memory: memory, cpus: cpus,
            listen: listen, parameters: parameters)
        l.seed = seed
        l.seedOutsideProject = seedOutsideProject
        l.tls = tls
        l.tlsCertificate = tlsCertificate
        l.tlsKey = tlsKey
        l.externalURL = externalURL
        l.audit = audit
        l.cron = cron
        l.backupArchive = backupArchive
        l.backupTarget = backupTarget
        l.backupWindow = backupWindow
        l.backupMaxSize = backupMaxSize
        l.backupSynchronous = backupSynchronous
        l.backupInterval = backupInterval
        l.backupSlotLimit = backupSlotLimit
        l.backupEngine = backupEngine
        l.backupRepository = backupRepository
        l.metricsListen = metricsListen
        l.metricsExporterNames = metricsExporterNames
        l.poolEnabled = poolEnabled
        l.poolMode = poolMode
        l.poolSize = poolSize
        l.poolMaxClients = poolMaxClients
        l.poolListen = poolListen
        return l
    }

    /// Applies a layer on top of these settings.
    public mutating func apply(_ layer: SettingsLayer) {
        if let v = layer.binDir { binDir = v }
        if let v = layer.locale { locale = v }
        if let v = layer.encoding { encoding = v }
        if let v = layer.initdbArgs { initdbArgs = v }
        if let v = layer.seed { seed = v }
        if let v = layer.seedOutsideProject { seedOutsideProject = v }
        if let v = layer.postgresUser { postgresUser = v }
        if let v = layer.socketDir { socketDir = v }
        if let v = layer.startTimeout { startTimeout = v }
        if let v = layer.stopTimeout { stopTimeout = v }
        if let v = layer.templateCache { templateCache = v }
        if let v = layer.profile { profile = v }
        if let v = layer.memory { memory = v }
        if let v = layer.cpus { cpus = v }
        if let v = layer.listen { listen = v }
        if let v = layer.tls { tls = v }
        if let v = layer.tlsCertificate { tlsCertificate = v }
        if let v = layer.tlsKey { tlsKey = v }
        if let v = layer.externalURL { externalURL = v }
        if let v = layer.audit { audit = v }
        if let v = layer.cron { cron = v }
        if let v = layer.backupArchive { backupArchive = v }
        if let v = layer.backupTarget { backupTarget = v }
        if let v = layer.backupWindow { backupWindow = v }
        if let v = layer.backupMaxSize { backupMaxSize = v }
        if let v = layer.backupSynchronous { backupSynchronous = v }
        if let v = layer.backupInterval { backupInterval = v }
        if let v = layer.backupSlotLimit { backupSlotLimit = v }
        if let v = layer.backupEngine { backupEngine = v }
        if let v = layer.backupRepository { backupRepository = v }
        if let v = layer.metricsListen { metricsListen = v }
        if let v = layer.metricsExporterNames { metricsExporterNames = v }
        if let v = layer.poolEnabled { poolEnabled = v }
        if let v = layer.poolMode { poolMode = v }
        if let v = layer.poolSize { poolSize = v }
        if let v = layer.poolMaxClients { poolMaxClients = v }
        if let v = layer.poolListen { poolListen = v }
        for p in layer.parameters {
            if let i = parameters.firstIndex(where: { $0.name.lowercased() == p.name.lowercased() }) {
                parameters[i] = p
            } else {
                parameters.append(p)
            }
        }
    }
}

/// One layer of settings (the file, the environment or the command line): only what it sets.
public struct SettingsLayer: Sendable, Equatable {
    public var binDir: String?
    public var locale: String?
    public var encoding: String?
    public var initdbArgs: [String]?
    /// `[postgres] seed` (config.toml only).
    public var seed: [String]?
    /// `[postgres] seed_outside_project` (config.toml only).
    public var seedOutsideProject: Bool?
    public var postgresUser: String?
    public var socketDir: String?
    public var startTimeout: Duration?
    public var stopTimeout: Duration?
    public var templateCache: Bool?
    public var profile: Profile?
    public var memory: MemorySize?
    public var cpus: Int?
    public var listen: ListenAddress?
    public var tls: Bool?
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var externalURL: String?
    public var audit: Bool?
    public var cron: Bool?
    public var backupArchive: Bool?
    public var backupTarget: String?
    public var backupWindow: Duration?
    public var backupMaxSize: MemorySize?
    public var backupSynchronous: Bool?
    public var backupInterval: Duration?
    public var backupSlotLimit: MemorySize?
    public var backupEngine: BackupEngine?
    public var backupRepository: [String]?
    public var metricsListen: ListenAddress?
    public var metricsExporterNames: Bool?
    public var poolEnabled: Bool?
    public var poolMode: PoolMode?
    public var poolSize: Int?
    public var poolMaxClients: Int?
    public var poolListen: ListenAddress?
    public var parameters: [AmpSettings.Parameter] = []

    public init(
        binDir: String? = nil, locale: String? = nil, encoding: String? = nil, initdbArgs: [String]? = nil,
        postgresUser: String? = nil, socketDir: String? = nil, startTimeout: Duration? = nil,
        stopTimeout: Duration? = nil, templateCache: Bool? = nil, profile: Profile? = nil, memory: MemorySize? = nil,
        cpus: Int? = nil, listen: ListenAddress? = nil, parameters: [AmpSettings.Parameter] = []
    ) {
        self.listen = listen
        self.templateCache = templateCache
        self.profile = profile
        self.memory = memory
        self.cpus = cpus
        self.binDir = binDir
        self.locale = locale
        self.encoding = encoding
        self.initdbArgs = initdbArgs
        self.postgresUser = postgresUser
        self.socketDir = socketDir
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.parameters = parameters
    }
}

/// The bounds of every value amp reads, in one place, with the words error messages use.
public enum SettingBounds {
    /// Start and stop timeouts: from 100 ms to one day.
    public static let timeout: ClosedRange<Duration> = .milliseconds(100) ... .seconds(86_400)
    public static let timeoutText = "from 100ms to 24h, such as \"90s\", \"500ms\" or \"2min\""
    /// CPU counts for sizing.
    public static let cpus: ClosedRange<Int> = 1...4096
    public static let cpusText = "a whole number of CPUs from 1 to 4096"
    public static let profileText = "dev or durable"
    public static let engineText = "amp or pgbackrest"
    public static let poolModeText = "transaction or session"
    /// Connection counts (`[pool] size`, `max_clients`).
    public static let count: ClosedRange<Int> = 1...10_000
    public static let countText = "a whole number from 1 to 10000"
    public static let optionsText = "pgBackRest options as NAME=VALUE, such as repo1-type=s3 (NAME of lower-case letters, digits and '-'; no line breaks)"
    /// Backup periods (`[backup] window`, `base_interval`): from a minute to a year.
    public static let period: ClosedRange<Duration> = .seconds(60) ... .seconds(366 * 86_400)
    public static let periodText = "from 1min to 366d, such as \"30min\", \"24h\" or \"7d\""
}

/// Parses durations such as `90s`, `500ms`, `2min`, `1h`, or a bare number of seconds.
///
/// Checked: nil for anything that is not a non-negative finite duration representable in
/// milliseconds (so `99999999999999999999s` is an error, never a crash); range checks are the
/// caller's (``SettingBounds``).
public func parseDuration(_ text: String) -> Duration? {
    let t = text.trimmingWhitespace
    let number = t.prefix { ("0"..."9").contains($0) || $0 == "." }
    let unit = t.dropFirst(number.count).trimmingWhitespace
    guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1,
          let value = Double(number), value >= 0, value.isFinite else { return nil }
    let scale: Double
    switch unit {
    case "", "s", "sec", "secs", "second", "seconds": scale = 1
    case "ms", "msec", "millisecond", "milliseconds": scale = 0.001
    case "m", "min", "mins", "minute", "minutes": scale = 60
    case "h", "hour", "hours": scale = 3600
    case "d", "day", "days": scale = 86_400
    default: return nil
    }
    let milliseconds = (value * scale * 1000).rounded()
    // Int64 holds up to ~9.2e18; stay well inside it before converting.
    guard milliseconds.isFinite, milliseconds < 1e15 else { return nil }
    return .milliseconds(Int64(milliseconds))
}

/// A duration within ``SettingBounds/timeout``, else nil.
public func parseTimeout(_ text: String) -> Duration? {
    parseDuration(text).flatMap { SettingBounds.timeout.contains($0) ? $0 : nil }
}

/// A duration within ``SettingBounds/period``, else nil.
public func parsePeriod(_ text: String) -> Duration? {
    parseDuration(text).flatMap { SettingBounds.period.contains($0) ? $0 : nil }
}

/// Whether `name` can be a PostgreSQL parameter name (`work_mem`, `auto_explain.log_min_duration`).
public func isValidParameterName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, first == "_" || (first.properties.isAlphabetic && first.isASCII) else { return false }
    return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == ".") }
        && !name.hasSuffix(".") && !name.contains("..")
}


/// Who keeps the backups (`[backup] engine`).
public enum BackupEngine: String, Sendable, CaseIterable {
    /// amp's own archive: `pg_receivewal` on a slot, `pg_basebackup`, in `[backup] target`.
    case amp
    /// pgBackRest: `archive_command` pushes whole segments, `pgbackrest backup` (full, then
    /// incremental), to any repository it supports (a directory, S3, Azure, GCS, SFTP).
    case pgbackrest
}

/// One pgBackRest option of `[backup] repository` (`repo1-type=s3`), checked at the edge.
public enum BackupRepositoryOption {
    /// The option's name and value, or nil when `text` is not `NAME=VALUE` with a name of
    /// lower-case letters, digits and '-' and a value without line breaks or NUL.
    public static func split(_ text: String) -> (name: String, value: String)? {
        guard let eq = text.firstIndex(of: "=") else { return nil }
        let name = String(text[..<eq]), value = String(text[text.index(after: eq)...])
        guard !name.isEmpty, name.count <= 64, name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }),
              !value.isEmpty, !value.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) else { return nil }
        return (name, value)
    }
}

/// How PgBouncer shares server connections (`[pool] mode`).
///
/// See <https://www.pgbouncer.org/config.html#pool_mode>.
public enum PoolMode: String, Sendable, CaseIterable {
    /// A server connection for the length of a transaction: many clients per connection, but
    /// no session state (SET, LISTEN, advisory locks, temporary tables, prepared statements
    /// with PgBouncer 1.18) survives a transaction.
    case transaction
    /// A server connection for the length of the client's session: everything works, fewer
    /// clients share a connection.
    case session
}
