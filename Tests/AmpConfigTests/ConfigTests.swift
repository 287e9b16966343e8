import AmpConfig
import Testing

@Suite("configuration layers")
struct ConfigTests {
    let file = "/p/.amp/config.toml"

    @Test("every field of config.toml is read; relative paths are taken from the project")
    func readsFile() throws {
        let (layer, warnings) = try ConfigLoader.parseFile("""
            [postgres]
            bin_dir = "pg/bin"
            locale = "C.UTF-8"
            encoding = "UTF8"
            initdb_args = ["--data-checksums", "--wal-segsize=32"]
            user = "postgres"
            socket_dir = "/run/x"
            start_timeout = "2min"
            stop_timeout = 10

            [postgres.parameters]
            work_mem = "8MB"
            max_connections = 50
            fsync = true
            auto_explain.log_min_duration = "250ms"
            "pg_stat_statements.max" = 1000
            """, path: file, baseDirectory: "/p")
        #expect(warnings.isEmpty)
        #expect(layer.binDir == "/p/pg/bin")
        #expect(layer.locale == "C.UTF-8")
        #expect(layer.initdbArgs == ["--data-checksums", "--wal-segsize=32"])
        #expect(layer.postgresUser == "postgres")
        #expect(layer.socketDir == "/run/x")
        #expect(layer.startTimeout == .seconds(120))
        #expect(layer.stopTimeout == .seconds(10))
        #expect(layer.parameters.map { "\($0.name)=\($0.value)" } == [
            "work_mem=8MB", "max_connections=50", "fsync=on", "auto_explain.log_min_duration=250ms", "pg_stat_statements.max=1000",
        ])
    }

    @Test("an unknown key is a warning naming file, line and key")
    func unknownKeys() throws {
        let (_, warnings) = try ConfigLoader.parseFile("[postgres]\nlocale = \"C\"\nlocal = \"C\"\n[server]\nx = 1\n", path: file, baseDirectory: "/p")
        #expect(warnings.count == 2)
        #expect(warnings[0].hasPrefix("/p/.amp/config.toml:3: unknown key 'postgres.local'"))
        #expect(warnings[1].hasPrefix("/p/.amp/config.toml:4: unknown key 'server'"))
    }

    @Test("a malformed file or value names file, line and key", arguments: [
        ("[postgres\n", ConfigError.Code.malformedFile, 1, nil as String?),
        ("[postgres]\nlocale = 5\n", .invalidValue, 2, "postgres.locale"),
        ("[postgres]\n\nstart_timeout = \"soon\"\n", .invalidValue, 3, "postgres.start_timeout"),
        ("[postgres]\ninitdb_args = \"--data-checksums\"\n", .invalidValue, 2, "postgres.initdb_args"),
        ("[postgres.parameters]\nwork_mem = [1]\n", .invalidValue, 2, "postgres.parameters.work_mem"),
        ("postgres = 1\n", .invalidValue, 1, "postgres"),
    ])
    func errors(text: String, code: ConfigError.Code, line: Int, key: String?) {
        do {
            _ = try ConfigLoader.parseFile(text, path: file, baseDirectory: "/p")
            Issue.record("no error for \(text)")
        } catch {
            #expect(error.code == code)
            #expect(error.line == line)
            #expect(error.key == key)
            #expect(error.message.hasPrefix("\(file):\(line): "), "\(error.message)")
            #expect(!error.message.contains("\n"))
        }
    }

    @Test("environment variables")
    func environment() throws {
        let layer = try ConfigLoader.environmentLayer([
            "AMP_PG_BIN_DIR": "bin", "AMP_PG_LOCALE": "C.UTF-8", "AMP_PG_INITDB_ARGS": "--data-checksums  -k",
            "AMP_PG_START_TIMEOUT": "500ms", "AMP_PG_PARAM_work_mem": "9MB",
            "AMP_PG_PARAM_auto_explain__log_analyze": "on", "UNRELATED": "x",
        ], workingDirectory: "/cwd")
        #expect(layer.binDir == "/cwd/bin")
        #expect(layer.locale == "C.UTF-8")
        #expect(layer.initdbArgs == ["--data-checksums", "-k"])
        #expect(layer.startTimeout == .milliseconds(500))
        #expect(layer.parameters.map(\.name).sorted() == ["auto_explain.log_analyze", "work_mem"])
        #expect(throws: ConfigError.self) { try ConfigLoader.environmentLayer(["AMP_PG_STOP_TIMEOUT": "later"], workingDirectory: "/") }
        #expect(throws: ConfigError.self) { try ConfigLoader.environmentLayer(["AMP_PG_LOCALE": ""], workingDirectory: "/") }
        #expect(throws: ConfigError.self) { try ConfigLoader.environmentLayer(["AMP_PG_PARAM_9x": "1"], workingDirectory: "/") }
    }

    @Test("defaults < file < environment < command line, parameters merged by name")
    func precedence() {
        var s = AmpSettings()
        #expect(s.locale == "C" && s.encoding == "UTF8" && s.binDir == nil && s.startTimeout == .seconds(90))
        s.apply(SettingsLayer(locale: "file", parameters: [.init(name: "work_mem", value: "1MB"), .init(name: "a", value: "file")]))
        s.apply(SettingsLayer(locale: "env", parameters: [.init(name: "WORK_MEM", value: "2MB")]))
        s.apply(SettingsLayer(encoding: "LATIN1", parameters: [.init(name: "work_mem", value: "3MB")]))
        #expect(s.locale == "env")
        #expect(s.encoding == "LATIN1")
        #expect(s.parameters.map { "\($0.name)=\($0.value)" } == ["work_mem=3MB", "a=file"])
    }

    @Test("parameter assignments from -c", arguments: ["work_mem=16MB", "log_statement=all", "search_path=a,b", "x.y="])
    func assignments(text: String) throws {
        let p = try ConfigLoader.parseParameterAssignment(text, flag: "--set")
        #expect("\(p.name)=\(p.value)" == text)
    }

    @Test("bad -c values are rejected", arguments: ["work_mem", "=1", "1x=2", "a b=1"])
    func badAssignments(text: String) {
        #expect(throws: ConfigError.self) { try ConfigLoader.parseParameterAssignment(text, flag: "--set") }
    }

    @Test("durations", arguments: [("90", 90_000), ("90s", 90_000), ("500ms", 500), ("2min", 120_000), ("1.5h", 5_400_000)])
    func durations(text: String, ms: Int64) {
        #expect(parseDuration(text) == .milliseconds(ms))
    }

    @Test("amp dir: --amp-dir > AMP_DIR > working directory")
    func ampDirPrecedence() {
        let env = ["AMP_DIR": "/env/proj"]
        #expect(AmpDirectory.resolve(flag: "flag", environment: env, workingDirectory: "/cwd").base == "/cwd/flag")
        #expect(AmpDirectory.resolve(flag: nil, environment: env, workingDirectory: "/cwd").base == "/env/proj")
        let d = AmpDirectory.resolve(flag: nil, environment: [:], workingDirectory: "/cwd/x/../proj")
        #expect(d.base == "/cwd/proj" && d.source == .workingDirectory)
        #expect(d.metadb == "/cwd/proj/.amp/metadb")
        #expect(d.configFile == "/cwd/proj/.amp/config.toml")
    }
}
