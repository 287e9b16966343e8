#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpConfig
import AmpPostgres
import AmpTuning
import ThreadSupport
import SystemSupport

/// The effective server settings and what goes with them.
struct ServerSettings {
    /// One entry per parameter, the winner, with its source.
    var effective: [EffectiveSetting]
    /// The parameters for the builder, in precedence order (later wins).
    var parameters: [(String, String)]
    /// initdb arguments for a new cluster (profile's, then the user's).
    var initdbArguments: [String]
    /// Extensions to create in the default database of a new cluster.
    var createExtensions: [String]
    /// Extensions of the modules asked for (pgaudit, pg_cron), created at every start when
    /// missing (the setting may be new for an existing cluster).
    var moduleExtensions: [String] = []
    /// Things to say once in the log (e.g. missing contrib modules).
    var notes: [String]
    var version: PostgresVersion
    var binaries: PostgresBinaries
    /// The CPU count the sizing used (the pool's size follows it).
    var cpus = 1
    /// The pgBackRest engine, when it keeps the backups (its `archive_command` is among the parameters).
    var pgBackRest: PgBackRest? = nil

    /// Adds the TCP listener's parameters (``TCPListener/parameters``), with the layer that
    /// set `listen` as their source; they replace amp's fixed `listen_addresses = ''`.
    mutating func addListener(_ parameters: [(String, String)], layers: ConfigurationLayers) {
        let source: SettingSource
        let origin = layers.source(of: .listen) ?? "listen"
        switch layers.layer(of: .listen) {
        case .commandLine?: source = .commandLine(origin)
        case .environment?: source = .environment(origin)
        case .file?, nil: source = .file(origin)
        }
        let names = Set(parameters.map { $0.0.lowercased() })
        effective.removeAll { names.contains($0.name.lowercased()) }
        effective += parameters.map { EffectiveSetting(name: $0.0, value: $0.1, source: source) }
        effective.sort { $0.name < $1.name }
        self.parameters += parameters
    }

    /// Works out every setting: built-in < profile < sizing < version < extensions < file <
    /// environment < command line. A pure function of the typed settings and the measured
    /// facts, tested without I/O. Unknown parameter names (for this server version) are an
    /// error naming where they came from.
    static func decide(_ layers: ConfigurationLayers, facts: ServerFacts) throws(ServerSettingsError) -> ServerSettings {
        let settings = layers.settings
        let profile = settings.profile
        let version = facts.version, binaries = facts.binaries

        // Memory: explicit > cgroup > physical × the profile's share.
        var memoryBytes: UInt64 = 1 << 30
        var memorySource = BudgetSource.physical(share: "unknown, 1 GB assumed")
        if let size = settings.memory {
            memoryBytes = size.bytes
            memorySource = .explicit(layers.source(of: .memory) ?? "setting")
        } else if let limit = facts.cgroupMemory {
            memoryBytes = limit.bytes
            memorySource = .cgroup(limit.file)
        } else if let physical = facts.physicalMemory {
            let share = profile.memoryShare
            memoryBytes = physical / share.denominator * share.numerator
            memorySource = .physical(share: "\(share.numerator)/\(share.denominator) (profile \(profile.rawValue))")
        }
        // CPUs: explicit > cgroup quota > affinity mask > online.
        var cpus = max(1, facts.onlineCPUs)
        var cpuSource = BudgetSource.online
        if let n = settings.cpus {
            cpus = n
            cpuSource = .explicit(layers.source(of: .cpus) ?? "setting")
        } else if let quota = facts.cgroupCPUs {
            cpus = quota.cpus
            cpuSource = .cgroup(quota.file)
        } else if let n = facts.affinityCPUs {
            cpus = n
            cpuSource = .affinity
        }

        let libraries = facts.libraries
        var modules: [OptionalModule] = []
        if settings.audit { modules.append(.pgaudit) }
        if settings.cron { modules.append(.pgCron) }
        for module in modules where !libraries.contains(module.rawValue) {
            let setting = module == .pgaudit ? "audit" : "cron"
            throw .missingModule(
                "[postgres] \(setting) = true needs \(module.rawValue), which PostgreSQL \(version.majorNumber) here does not have "
                    + "(no \(module.rawValue).so in \(binaries.libraryDirectories.joined(separator: " or "))): "
                    + "apt install \(module.package(major: version.majorNumber)), or set \(setting) = false")
        }
        var input = TuningInput(
            profile: profile, memoryBytes: memoryBytes, memorySource: memorySource, cpus: cpus, cpuSource: cpuSource,
            serverMajor: version.majorNumber, hasLZ4: facts.hasLZ4, availableLibraries: libraries)
        input.modules = modules
        var entries = PostgresBuilder.fixedParameters.map { EffectiveSetting(name: $0.name, value: $0.value, source: .builtIn) }
        entries += tuningPlan(input)
        entries += archiveParameters(settings, pgBackRest: facts.pgBackRest, major: version.majorNumber)
        // The user's parameters, each from the layer that set it.
        let known = facts.parameterNames
        func add(_ layer: SettingsLayer?, _ source: (String) -> SettingSource) throws(ServerSettingsError) {
            for p in layer?.parameters ?? [] {
                let s = source(p.name)
                if let known, !p.name.contains("."), !known.contains(p.name.lowercased()) {
                    throw .unknownParameter(
                        "\(s): PostgreSQL \(version) has no server parameter \"\(p.name)\"; check its spelling "
                            + "(`\(binaries.path("postgres")) --describe-config` lists them) or remove it")
                }
                entries.append(EffectiveSetting(name: p.name, value: p.value, source: s))
            }
        }
        try add(layers.file) { _ in .file(layers.filePath) }
        try add(layers.environment) { .environment("AMP_PG_PARAM_" + $0.replacing(".", with: "__")) }
        try add(layers.commandLine) { _ in .commandLine("--set") }

        var winners: [String: Int] = [:]
        for (i, e) in entries.enumerated() { winners[e.name.lowercased()] = i }
        let effective = winners.values.sorted().map { entries[$0] }.sorted { $0.name < $1.name }
        var notes: [String] = []
        let missing = baselineLibraries.filter { !libraries.contains($0) }
        if !missing.isEmpty {
            notes.append("\(missing.joined(separator: " and ")) not found in \(binaries.libraryDirectories.joined(separator: " or ")); "
                + "starting without them (Debian: apt install postgresql-contrib)")
        }
        var initdb = profile.initdbArguments.filter { !settings.initdbArgs.contains($0) }
        initdb += settings.initdbArgs
        return ServerSettings(
            effective: effective, parameters: entries.filter { $0.source != .builtIn }.map { ($0.name, $0.value) },
            initdbArguments: initdb,
            createExtensions: libraries.contains("pg_stat_statements") ? ["pg_stat_statements"] : [],
            moduleExtensions: modules.map(\.rawValue),
            notes: notes, version: version, binaries: binaries, cpus: cpus, pgBackRest: facts.pgBackRest)
    }

    /// `max_connections` in effect.
    var maxConnections: Int { effective.first { $0.name == "max_connections" }.flatMap { Int($0.value.trimmingWhitespace) } ?? 100 }
}

/// The server parameters the continuous archive needs. amp's engine: a bound on the WAL its
/// slot may hold back (`max_slot_wal_keep_size`, so a dead archiver never fills the cluster's
/// disk), and with `[backup] synchronous` the archiver as the synchronous standby (commits wait
/// for its flush), and on 17+ `summarize_wal = on` (incremental base backups); see
/// <https://www.postgresql.org/docs/17/runtime-config-replication.html> and
/// <https://www.postgresql.org/docs/17/runtime-config-wal.html#RUNTIME-CONFIG-WAL-SUMMARIZATION>.
/// pgBackRest: `archive_mode = on`, its `archive-push` as `archive_command`, and
/// `archive_timeout = 60s` (a quiet cluster's last commits reach the repository within a
/// minute); see <https://www.postgresql.org/docs/15/runtime-config-wal.html#RUNTIME-CONFIG-WAL-ARCHIVING>.
func archiveParameters(_ settings: AmpSettings, pgBackRest: PgBackRest?, major: Int) -> [EffectiveSetting] {
    guard settings.backupArchive, settings.externalURL == nil else { return [] }
    if let pgBackRest {
        return [
            EffectiveSetting(name: "archive_mode", value: "on", source: .backup("engine = pgbackrest")),
            EffectiveSetting(name: "archive_command", value: pgBackRest.archiveCommand, source: .backup("engine = pgbackrest")),
            EffectiveSetting(name: "archive_timeout", value: "60s", source: .backup("engine = pgbackrest")),
        ]
    }
    var out = [EffectiveSetting(name: "max_slot_wal_keep_size", value: "\(settings.backupSlotLimit.bytes >> 20)MB", source: .backup("max_slot_wal"))]
    if major >= 17 {
        out.append(EffectiveSetting(name: "summarize_wal", value: "on", source: .backup("incremental base backups on 17+")))
    }
    if settings.backupSynchronous {
        out.append(EffectiveSetting(name: "synchronous_standby_names", value: "\"\(WALArchiver.applicationName)\"", source: .backup("synchronous = true")))
    }
    return out
}

/// What the server settings are decided from, measured once per start: the binaries and
/// their version (`postgres --version`, cached), what they were built with and ship, and the
/// machine's memory and CPUs.
struct ServerFacts {
    var binaries: PostgresBinaries
    var version: PostgresVersion
    var hasLZ4: Bool
    /// The baseline libraries found in the server's library directory.
    var libraries: Set<String>
    /// The server's parameter names (lower case), when `postgres --describe-config` ran.
    var parameterNames: Set<String>?
    var cgroupMemory: (bytes: UInt64, file: String)?
    var physicalMemory: UInt64?
    var cgroupCPUs: (cpus: Int, file: String)?
    var affinityCPUs: Int?
    var onlineCPUs: Int
    /// The pgBackRest engine, when `[backup] engine = "pgbackrest"` (located by ``StartupPlan``).
    var pgBackRest: PgBackRest? = nil

    /// Locates the binaries (`binaryDirectory`, else discovery), reads their version and
    /// capabilities (cached in `cacheDirectory`) and the machine's resources.
    static func measure(binaryDirectory: String?, environment: [String: String], cacheDirectory: String?) async throws(PostgresError) -> ServerFacts {
        let binaries = try PostgresBinaries.locate(explicit: binaryDirectory, searchPath: environment["PATH"])
        let version = try await binaries.version(cacheDirectory: cacheDirectory)
        let detector = ResourceDetector { FileContents.text($0) }
        return ServerFacts(
            binaries: binaries, version: version, hasLZ4: await binaries.hasLZ4(cacheDirectory: cacheDirectory),
            libraries: binaries.availableLibraries(baselineLibraries + OptionalModule.allCases.map(\.rawValue)),
            parameterNames: await binaries.parameterNames(cacheDirectory: cacheDirectory),
            cgroupMemory: detector.cgroupMemoryLimit(), physicalMemory: detector.physicalMemory(),
            cgroupCPUs: detector.cgroupCPUQuota(), affinityCPUs: affinityCPUCount(),
            onlineCPUs: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

enum ServerSettingsError: Error {
    case postgres(PostgresError)
    case unknownParameter(String)
    /// `[postgres] audit` or `cron` without the module installed.
    case missingModule(String)
}

