#if canImport(Glibc)
import Glibc
#endif
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
        // Overflow, out of range and nonsense: errors, never crashes or silent clamping.
        ("[postgres]\nstart_timeout = \"99999999999999999999s\"\n", .invalidValue, 2, "postgres.start_timeout"),
        ("[postgres]\nstop_timeout = 9223372036854775807\n", .invalidValue, 2, "postgres.stop_timeout"),
        ("[postgres]\nstop_timeout = \"25h\"\n", .invalidValue, 2, "postgres.stop_timeout"),
        ("[postgres]\nstart_timeout = \"10ms\"\n", .invalidValue, 2, "postgres.start_timeout"),
        ("[postgres]\nstart_timeout = -5\n", .invalidValue, 2, "postgres.start_timeout"),
        ("[postgres]\nmemory = \"9223372036854775807GB\"\n", .invalidValue, 2, "postgres.memory"),
        ("[postgres]\nmemory = 9223372036854775807\n", .invalidValue, 2, "postgres.memory"),
        ("[postgres]\ncpus = 9223372036854775807\n", .invalidValue, 2, "postgres.cpus"),
        ("[postgres]\ncpus = 0\n", .invalidValue, 2, "postgres.cpus"),
        ("[postgres]\nprofile = \"fast\"\n", .invalidValue, 2, "postgres.profile"),
        ("[postgres]\ninitdb_args = " + String(repeating: "[", count: 5000) + "\n", .malformedFile, 2, nil),
        ("[postgres]\nx = " + String(repeating: "{a=", count: 5000) + "\n", .malformedFile, 2, nil),
        ("[postgres]\n" + String(repeating: "a.", count: 5000) + "b = 1\n", .malformedFile, 2, nil),
        ("[postgres]\nlocale = \"\"\"C\"\"\"\"\"\"\n", .malformedFile, 2, nil),
        ("[postgres]\nparameters.a = 1\n[postgres.parameters]\n", .malformedFile, 3, nil),
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

    @Test("bad durations are nil, never a crash", arguments: [
        "99999999999999999999s", "1e400", "nan", "inf", "-1s", "1.2.3s", ".s", "", "s", "10 parsecs", "9223372036854775807h",
    ])
    func badDurations(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test("timeouts are bounded to 100ms…24h")
    func timeoutBounds() {
        #expect(parseTimeout("100ms") == .milliseconds(100))
        #expect(parseTimeout("24h") == .seconds(86_400))
        #expect(parseTimeout("99ms") == nil)
        #expect(parseTimeout("24.001h") == nil)
        #expect(parseTimeout("0") == nil)
    }

    @Test("config.toml must be UTF-8: the line of the first bad byte is named")
    func notUTF8() throws {
        let dir = "/tmp/amp-config-test-\(getpid())"
        mkdir(dir, 0o700)
        defer { unlink(dir + "/config.toml"); rmdir(dir) }
        let path = dir + "/config.toml"
        let bytes: [UInt8] = Array("[postgres]\nlocale = \"C".utf8) + [0xFF] + Array("\"\n".utf8)
        let f = fopen(path, "w")
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
        do {
            _ = try ConfigLoader.readFile(path: path, baseDirectory: dir)
            Issue.record("invalid UTF-8 accepted")
        } catch {
            #expect(error.code == .malformedFile && error.line == 2)
            #expect(error.message.hasPrefix("\(path):2: not UTF-8"), "\(error.message)")
        }
        #expect(try ConfigLoader.readFile(path: dir + "/missing.toml", baseDirectory: dir) == nil)
    }

    @Test("environment and flags: overflow and out-of-range values are errors naming the variable", arguments: [
        "AMP_PG_START_TIMEOUT=99999999999999999999s", "AMP_PG_STOP_TIMEOUT=0", "AMP_PG_MEMORY=9223372036854775807GB",
        "AMP_PG_MEMORY=1MB", "AMP_PG_CPUS=99999999999999999999", "AMP_PG_CPUS=5000", "AMP_PG_PROFILE=fast",
    ])
    func badEnvironment(assignment: String) {
        let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
        do {
            _ = try ConfigLoader.environmentLayer([parts[0]: parts[1]], workingDirectory: "/")
            Issue.record("accepted \(assignment)")
        } catch {
            #expect(error.code == .invalidEnvironment && error.key == parts[0])
            #expect(error.message.contains(assignment), "\(error.message)")
        }
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

@Suite("seed scripts inside the project (pure)")
struct SeedPlacementTests {
    @Test("a seed outside the project is refused with its line, unless seed_outside_project = true")
    func outside() throws {
        let file = "/p/.amp/config.toml"
        do {
            _ = try ConfigLoader.parseFile("[postgres]\nseed = [\"db/a.sql\", \"../elsewhere.sql\"]\n", path: file, baseDirectory: "/p")
            Issue.record("accepted a seed outside the project")
        } catch {
            #expect(error.message.contains("\(file):2: postgres.seed /elsewhere.sql is outside the project directory /p"), "\(error.message)")
        }
        #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[postgres]\nseed = [\"/etc/shadow\"]\n", path: file, baseDirectory: "/p") }
        let (layer, _) = try ConfigLoader.parseFile("[postgres]\nseed = [\"/srv/seed.sql\"]\nseed_outside_project = true\n", path: file, baseDirectory: "/p")
        #expect(layer.seed == ["/srv/seed.sql"] && layer.seedOutsideProject == true)
        let (inside, _) = try ConfigLoader.parseFile("[postgres]\nseed = [\"db/./a.sql\"]\n", path: file, baseDirectory: "/p")
        #expect(inside.seed == ["/p/db/a.sql"])
    }
}

