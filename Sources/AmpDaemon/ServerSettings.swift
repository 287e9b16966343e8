#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpTuning
import CSpawn
import SystemSupport

/// The configuration layers as read, kept apart so every setting can name its source.
struct ConfigurationLayers {
    var file: SettingsLayer?
    var filePath: String
    var environment: SettingsLayer
    var commandLine: SettingsLayer
    var settings: AmpSettings

    /// Reads config.toml (if any), the environment and the command line; nothing is touched.
    static func load(ampDir: AmpDirectory, environment: [String: String], workingDirectory: String,
                     commandLine: SettingsLayer, warn: (String) -> Void) throws(ConfigError) -> ConfigurationLayers {
        var settings = AmpSettings()
        var file: SettingsLayer?
        if let (layer, warnings) = try ConfigLoader.readFile(path: ampDir.configFile, baseDirectory: ampDir.base) {
            for w in warnings { warn(w) }
            settings.apply(layer)
            file = layer
        }
        let env = try ConfigLoader.environmentLayer(environment, workingDirectory: workingDirectory)
        settings.apply(env)
        settings.apply(commandLine)
        return ConfigurationLayers(file: file, filePath: ampDir.configFile, environment: env, commandLine: commandLine, settings: settings)
    }

    /// Which layer set a value last (command line > environment > file), for messages.
    func source<T>(_ key: KeyPath<SettingsLayer, T?>, flag: String, variable: String, fileKey: String) -> String? {
        if commandLine[keyPath: key] != nil { return flag }
        if environment[keyPath: key] != nil { return variable }
        if file?[keyPath: key] != nil { return "\(filePath) \(fileKey)" }
        return nil
    }
}

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
    /// Things to say once in the log (e.g. missing contrib modules).
    var notes: [String]
    var version: PostgresVersion
    var binaries: PostgresBinaries

    /// Works out every setting: built-in < profile < sizing < version < extensions < file <
    /// environment < command line. Unknown parameter names (for this server version) are an
    /// error naming where they came from.
    static func resolve(_ layers: ConfigurationLayers, environment: [String: String], cacheDirectory: String?) async throws(ServerSettingsError) -> ServerSettings {
        let settings = layers.settings
        let binaries: PostgresBinaries
        let version: PostgresVersion
        do {
            binaries = try PostgresBinaries.locate(explicit: settings.binDir, searchPath: environment["PATH"])
            version = try await binaries.version(cacheDirectory: cacheDirectory)
        } catch {
            throw .postgres(error)
        }
        let profile = settings.profile
        let detector = ResourceDetector { FileContents.text($0) }

        // Memory: explicit > cgroup > physical × the profile's share.
        var memoryBytes: UInt64 = 1 << 30
        var memorySource = BudgetSource.physical(share: "unknown, 1 GB assumed")
        if let size = settings.memory {
            memoryBytes = size.bytes
            memorySource = .explicit(layers.source(\.memory, flag: "--memory", variable: "AMP_PG_MEMORY", fileKey: "memory") ?? "setting")
        } else if let limit = detector.cgroupMemoryLimit() {
            memoryBytes = limit.bytes
            memorySource = .cgroup(limit.file)
        } else if let physical = detector.physicalMemory() {
            let share = profile.memoryShare
            memoryBytes = physical * share.numerator / share.denominator
            memorySource = .physical(share: "\(share.numerator)/\(share.denominator) (profile \(profile.rawValue))")
        }
        // CPUs: explicit > cgroup quota > affinity mask > online.
        var cpus = 1
        var cpuSource = BudgetSource.online
        if let n = settings.cpus {
            cpus = n
            cpuSource = .explicit(layers.source(\.cpus, flag: "--cpus", variable: "AMP_PG_CPUS", fileKey: "cpus") ?? "setting")
        } else if let quota = detector.cgroupCPUQuota() {
            cpus = quota.cpus
            cpuSource = .cgroup(quota.file)
        } else if let n = affinityCPUCount() {
            cpus = n
            cpuSource = .affinity
        } else {
            cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        }

        let libraries = binaries.availableLibraries(baselineLibraries)
        let input = TuningInput(
            profile: profile, memoryBytes: memoryBytes, memorySource: memorySource, cpus: cpus, cpuSource: cpuSource,
            serverMajor: version.majorNumber, hasLZ4: await binaries.hasLZ4(cacheDirectory: cacheDirectory),
            availableLibraries: libraries)
        var entries = PostgresBuilder(dataDirectory: "/").developmentDefaults(false).effectiveParameters.map {
            EffectiveSetting(name: $0.name, value: $0.value, source: .builtIn)
        }
        entries += tuningPlan(input)
        // The user's parameters, each from the layer that set it.
        let known = await binaries.parameterNames(cacheDirectory: cacheDirectory)
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
            notes: notes, version: version, binaries: binaries)
    }
}

enum ServerSettingsError: Error {
    case postgres(PostgresError)
    case unknownParameter(String)
}

/// The number of CPUs in this thread's affinity mask (sched_getaffinity(2)).
func affinityCPUCount() -> Int? {
    let n = Int(amp_affinity_cpu_count())
    return n > 0 ? n : nil
}
