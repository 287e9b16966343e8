/// A profile: what the server is for.
public enum Profile: String, Sendable, CaseIterable {
    /// Fast settings for development (the default): `fsync`, `full_page_writes` and
    /// `autovacuum` off, `synchronous_commit` on. A crash of PostgreSQL or of ampd loses no
    /// acknowledged commit (the WAL reaches the kernel before COMMIT returns); only an OS
    /// crash or power loss may lose or corrupt data. Budget 1/16 of physical memory, so four
    /// busy projects on a 16 GB laptop take at most a quarter of it.
    case dev
    /// Crash-safe settings: fsync, synchronous_commit, full_page_writes and autovacuum on, data
    /// checksums for new clusters, 256 MB of WAL kept past each checkpoint (`wal_keep_size`:
    /// a former primary still has the WAL `pg_rewind` reads back to where a promoted standby
    /// left it); budget 1/8 of physical memory.
    case durable

    /// The share of physical memory used as the budget when nothing else gives one.
    public var memoryShare: (numerator: UInt64, denominator: UInt64) {
        switch self {
        case .dev: return (1, 16)
        case .durable: return (1, 8)
        }
    }

    public var parameters: [(String, String)] {
        switch self {
        case .dev: return [("fsync", "off"), ("synchronous_commit", "on"), ("full_page_writes", "off"), ("autovacuum", "off")]
        case .durable: return [("fsync", "on"), ("synchronous_commit", "on"), ("full_page_writes", "on"), ("autovacuum", "on"), ("wal_keep_size", "256MB")]
        }
    }

    /// The most shared_buffers this profile takes from a budget amp guessed (a share of
    /// physical memory), in MiB; nil for no cap. Every start of PostgreSQL pays for its shared
    /// buffers before it accepts a connection (the buffer descriptors, the lookup table and the
    /// other structures sized from them are set up and faulted in): measured with PostgreSQL 15
    /// on 2 cores, 376MB took 9–10 ms longer to READY=1 than 128MB (38.4 ms against 29.7 ms,
    /// median of 9). A development database's working set is small and lives in the OS page
    /// cache anyway (`effective_cache_size` still follows the budget), so the dev profile keeps
    /// PostgreSQL's own default there unless the user gives a budget (`--memory`,
    /// `AMP_PG_MEMORY`, `[resources] memory`) or a cgroup limit sets one.
    public var guessedBudgetSharedBuffersCapMB: Int? {
        switch self {
        case .dev: return 128
        case .durable: return nil
        }
    }

    /// Extra initdb arguments for new clusters.
    public var initdbArguments: [String] {
        self == .durable ? ["--data-checksums"] : []
    }
}

/// Where an effective setting comes from (lowest precedence first).
public enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    case builtIn
    case profile(String)
    case sizing(String)
    case version(String)
    case extensions
    /// The continuous archive (`[backup]`): why.
    case backup(String)
    case file(String)
    case environment(String)
    case commandLine(String)

    public var description: String {
        switch self {
        case .builtIn: return "default"
        case .profile(let p): return "profile \(p)"
        case .sizing(let why): return "sizing (\(why))"
        case .version(let v): return "PostgreSQL \(v)"
        case .extensions: return "baseline extensions"
        case .backup(let why): return "backup (\(why))"
        case .file(let f): return f
        case .environment(let v): return "environment \(v)"
        case .commandLine(let f): return "command line \(f)"
        }
    }

    /// A short machine-readable kind for JSON.
    public var kind: String {
        switch self {
        case .builtIn: return "default"
        case .profile: return "profile"
        case .sizing: return "sizing"
        case .version: return "version"
        case .extensions: return "extensions"
        case .backup: return "backup"
        case .file: return "file"
        case .environment: return "environment"
        case .commandLine: return "command-line"
        }
    }
}

/// One effective server setting and its source.
public struct EffectiveSetting: Sendable, Equatable {
    public var name: String
    public var value: String
    public var source: SettingSource

    public init(name: String, value: String, source: SettingSource) {
        self.name = name
        self.value = value
        self.source = source
    }
}

/// What the plan is computed from.
public struct TuningInput: Sendable {
    public var profile: Profile
    public var memoryBytes: UInt64
    public var memorySource: BudgetSource
    public var cpus: Int
    public var cpuSource: BudgetSource
    /// The server's major version number (13, 14, …).
    public var serverMajor: Int
    /// Whether the server binary was built with LZ4.
    public var hasLZ4: Bool
    /// Preloadable libraries found in the server's library directory.
    public var availableLibraries: Set<String>

    /// Modules asked for (`[postgres] audit`, `cron`); their presence is checked before.
    public var modules: [OptionalModule] = []
    /// The default database (pg_cron's `cron.database_name`).
    public var defaultDatabase = "postgres"

    public init(profile: Profile, memoryBytes: UInt64, memorySource: BudgetSource, cpus: Int, cpuSource: BudgetSource,
                serverMajor: Int, hasLZ4: Bool, availableLibraries: Set<String>) {
        self.profile = profile
        self.memoryBytes = memoryBytes
        self.memorySource = memorySource
        self.cpus = cpus
        self.cpuSource = cpuSource
        self.serverMajor = serverMajor
        self.hasLZ4 = hasLZ4
        self.availableLibraries = availableLibraries
    }
}

/// The libraries amp preloads when the server has them.
public let baselineLibraries = ["pg_stat_statements", "auto_explain"]

/// Libraries preloaded only when asked for (`[postgres] audit`, `cron`), with the Debian
/// package that ships each (`postgresql-N-pgaudit`, `postgresql-N-cron`).
public enum OptionalModule: String, Sendable, CaseIterable {
    case pgaudit
    case pgCron = "pg_cron"

    /// The Debian package of this module for PostgreSQL `major`.
    public func package(major: Int) -> String { self == .pgaudit ? "postgresql-\(major)-pgaudit" : "postgresql-\(major)-cron" }
}

/// The profile, sizing, version and extension settings (everything below the user's own
/// parameters), in precedence order: later entries of the same name win.
public func tuningPlan(_ input: TuningInput) -> [EffectiveSetting] {
    var out: [EffectiveSetting] = []
    for (n, v) in input.profile.parameters { out.append(EffectiveSetting(name: n, value: v, source: .profile(input.profile.rawValue))) }
    let mb = Int(input.memoryBytes / (1024 * 1024))
    let why = "\(mb) MB from \(input.memorySource), \(input.cpus) CPUs from \(input.cpuSource)"
    var sizing = Sizing(memoryMB: mb, cpus: input.cpus)
    var capped: Int?
    if case .physical = input.memorySource, let cap = input.profile.guessedBudgetSharedBuffersCapMB, sizing.sharedBuffersMB > cap {
        sizing.sharedBuffersMB = cap
        capped = cap
    }
    for (n, v) in sizing.parameters {
        let source: SettingSource = n == "shared_buffers" && capped != nil
            ? .profile("\(input.profile.rawValue), at most \(capped ?? 0)MB from a guessed budget for a fast start; --memory sets more")
            : .sizing(why)
        out.append(EffectiveSetting(name: n, value: v, source: source))
    }
    let v = "\(input.serverMajor)"
    if input.serverMajor >= 18 { out.append(EffectiveSetting(name: "io_method", value: "worker", source: .version(v))) }
    let compression = input.serverMajor >= 15 ? (input.hasLZ4 ? "lz4" : "pglz") : "on"
    out.append(EffectiveSetting(name: "wal_compression", value: compression, source: .version(v)))
    let preload = baselineLibraries.filter { input.availableLibraries.contains($0) } + input.modules.map(\.rawValue)
    if !preload.isEmpty {
        out.append(EffectiveSetting(name: "shared_preload_libraries", value: preload.joined(separator: ","), source: .extensions))
    }
    if preload.contains("auto_explain") {
        out.append(EffectiveSetting(name: "auto_explain.log_min_duration", value: "250ms", source: .extensions))
    }
    if preload.contains("pg_stat_statements") {
        out.append(EffectiveSetting(name: "pg_stat_statements.track", value: "top", source: .extensions))
    }
    // pgaudit: DDL and role changes, without the catalog queries of psql's \d and the like.
    // See <https://github.com/pgaudit/pgaudit/blob/1.7.0/README.md#settings>.
    if input.modules.contains(.pgaudit) {
        out.append(EffectiveSetting(name: "pgaudit.log", value: "ddl, role", source: .extensions))
        out.append(EffectiveSetting(name: "pgaudit.log_catalog", value: "off", source: .extensions))
    }
    // pg_cron: jobs in the default database, run by background workers (amp's servers listen
    // on no TCP port for pg_cron's own connections), each run logged.
    // See <https://github.com/citusdata/pg_cron/blob/v1.4.2/README.md#setting-up-pg_cron>.
    if input.modules.contains(.pgCron) {
        out.append(EffectiveSetting(name: "cron.database_name", value: input.defaultDatabase, source: .extensions))
        out.append(EffectiveSetting(name: "cron.use_background_workers", value: "on", source: .extensions))
        out.append(EffectiveSetting(name: "cron.log_run", value: "on", source: .extensions))
    }
    return out
}
