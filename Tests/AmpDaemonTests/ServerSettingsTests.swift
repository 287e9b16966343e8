import AmpConfig
import AmpPostgres
import AmpTuning
import Testing
@testable import AmpDaemon

/// `ServerSettings.decide`: typed settings and measured facts in, the effective settings out;
/// no binaries run, no files read.
@Suite("server settings decision (pure)")
struct ServerSettingsTests {
    static let facts = ServerFacts(
        binaries: PostgresBinaries(directory: "/pg/15/bin"), version: PostgresVersion(major: "15", full: "15.4"), hasLZ4: true,
        libraries: ["pg_stat_statements", "auto_explain"], parameterNames: ["work_mem", "shared_buffers", "fsync"],
        cgroupMemory: nil, physicalMemory: 16 << 30, cgroupCPUs: nil, affinityCPUs: nil, onlineCPUs: 8)

    func layers(file: SettingsLayer? = nil, environment: SettingsLayer = SettingsLayer(), commandLine: SettingsLayer = SettingsLayer()) -> ConfigurationLayers {
        var settings = AmpSettings()
        if let file { settings.apply(file) }
        settings.apply(environment)
        settings.apply(commandLine)
        return ConfigurationLayers(file: file, filePath: "/p/.amp/config.toml", environment: environment, commandLine: commandLine, settings: settings)
    }

    func value(_ s: ServerSettings, _ name: String) -> EffectiveSetting? { s.effective.first { $0.name == name } }

    @Test("memory: explicit > cgroup > physical × the profile's share, with the source named")
    func memory() throws {
        let physical = try ServerSettings.decide(layers(), facts: Self.facts)
        #expect(value(physical, "effective_cache_size")?.source.description.contains("1024 MB from physical memory × 1/16") == true,
                "\(String(describing: value(physical, "effective_cache_size")))")
        // A guessed budget gives the dev profile PostgreSQL's own 128MB of shared buffers (a fast start).
        #expect(value(physical, "shared_buffers")?.value == "128MB")
        #expect(value(physical, "shared_buffers")?.source.description.contains("at most 128MB from a guessed budget") == true)
        var cgroup = Self.facts
        cgroup.cgroupMemory = (2 << 30, "/sys/fs/cgroup/memory.max")
        let limited = try ServerSettings.decide(layers(), facts: cgroup)
        #expect(value(limited, "shared_buffers")?.source.description.contains("memory.max") == true)
        let explicit = try ServerSettings.decide(layers(commandLine: SettingsLayer(memory: MemorySize(parsing: "512MB"))), facts: cgroup)
        #expect(value(explicit, "shared_buffers")?.source.description.contains("--memory") == true)
        #expect(value(explicit, "shared_buffers")?.value == "128MB")
    }

    @Test("CPUs: explicit > cgroup quota > affinity > online")
    func cpus() throws {
        var facts = Self.facts
        facts.affinityCPUs = 2
        #expect(try ServerSettings.decide(layers(), facts: facts).effective.contains { $0.source.description.contains("2 CPUs from") })
        facts.cgroupCPUs = (3, "/sys/fs/cgroup/cpu.max")
        #expect(try ServerSettings.decide(layers(), facts: facts).effective.contains { $0.source.description.contains("3 CPUs from") })
        let explicit = try ServerSettings.decide(layers(environment: SettingsLayer(cpus: 5)), facts: facts)
        #expect(explicit.effective.contains { $0.source.description.contains("5 CPUs from AMP_PG_CPUS") })
    }

    @Test("an unknown parameter is an error naming the layer; known and dotted ones pass, later layers win")
    func parameters() throws {
        let file = SettingsLayer(parameters: [.init(name: "work_mem", value: "8MB"), .init(name: "auto_explain.log_analyze", value: "on")])
        let s = try ServerSettings.decide(layers(file: file, commandLine: SettingsLayer(parameters: [.init(name: "work_mem", value: "16MB")])), facts: Self.facts)
        #expect(value(s, "work_mem")?.value == "16MB" && value(s, "work_mem")?.source == .commandLine("--set"))
        #expect(value(s, "auto_explain.log_analyze")?.source == .file("/p/.amp/config.toml"))
        do {
            _ = try ServerSettings.decide(layers(file: SettingsLayer(parameters: [.init(name: "wrok_mem", value: "1")])), facts: Self.facts)
            Issue.record("unknown parameter accepted")
        } catch {
            guard case .unknownParameter(let message) = error else { Issue.record("\(error)"); return }
            #expect(message.contains("/p/.amp/config.toml") && message.contains("wrok_mem"))
        }
    }

    @Test("version and build: io_method on 18, pglz without LZ4; missing contrib is a note, not an error")
    func versionAware() throws {
        var facts = Self.facts
        facts.version = PostgresVersion(major: "18", full: "18.1")
        facts.hasLZ4 = false
        facts.libraries = []
        let s = try ServerSettings.decide(layers(), facts: facts)
        #expect(value(s, "io_method")?.value == "worker")
        #expect(value(s, "wal_compression")?.value == "pglz")
        #expect(value(s, "shared_preload_libraries") == nil)
        #expect(s.notes.contains { $0.contains("postgresql-contrib") })
        #expect(s.createExtensions.isEmpty)
    }

    @Test("profiles: dev keeps synchronous_commit on; durable adds data checksums unless given")
    func profiles() throws {
        let dev = try ServerSettings.decide(layers(), facts: Self.facts)
        #expect(value(dev, "synchronous_commit")?.value == "on" && value(dev, "fsync")?.value == "off")
        #expect(dev.initdbArguments.isEmpty)
        let durable = try ServerSettings.decide(layers(file: SettingsLayer(initdbArgs: ["-k"], profile: .durable)), facts: Self.facts)
        #expect(durable.initdbArguments == ["--data-checksums", "-k"])
        #expect(value(durable, "fsync")?.value == "on")
        #expect(value(durable, "listen_addresses")?.value == "" && value(durable, "listen_addresses")?.source == .builtIn)
    }

    @Test("audit and cron: the modules preloaded after the baseline ones, their settings; a module not installed is an error naming its package")
    func modules() throws {
        var file = SettingsLayer()
        file.audit = true
        file.cron = true
        var facts = Self.facts
        facts.libraries = ["pg_stat_statements", "auto_explain", "pgaudit", "pg_cron"]
        let s = try ServerSettings.decide(layers(file: file), facts: facts)
        #expect(value(s, "shared_preload_libraries")?.value == "pg_stat_statements,auto_explain,pgaudit,pg_cron")
        #expect(value(s, "pgaudit.log")?.value == "ddl, role" && value(s, "cron.database_name")?.value == "postgres")
        #expect(value(s, "cron.use_background_workers")?.value == "on" && s.moduleExtensions == ["pgaudit", "pg_cron"])
        let none = try ServerSettings.decide(layers(), facts: facts)
        #expect(value(none, "shared_preload_libraries")?.value == "pg_stat_statements,auto_explain" && none.moduleExtensions.isEmpty)
        #expect(value(none, "pgaudit.log") == nil && value(none, "cron.database_name") == nil)
        do {
            _ = try ServerSettings.decide(layers(file: file), facts: Self.facts)
            Issue.record("accepted audit without pgaudit")
        } catch {
            guard case .missingModule(let message) = error else { Issue.record("\(error)"); return }
            #expect(message.hasPrefix("[postgres] audit = true needs pgaudit") && message.contains("apt install postgresql-15-pgaudit"), "\(message)")
        }
    }
}

