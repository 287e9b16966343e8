#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import Dispatch
import Testing

/// `[metrics] listen` and `ampctl metrics` with a real PostgreSQL, `promtool check metrics` and
/// a real Prometheus (Debian's `prometheus`, started by the test on free ports).
@Suite("metrics for Prometheus (built binaries, real PostgreSQL, promtool and Prometheus)", .serialized, unprivileged)
struct MetricsEndpointTests {
    static var installed: Bool { access("/usr/bin/prometheus", X_OK) == 0 && access("/usr/bin/promtool", X_OK) == 0 }
    /// The harness sets AMP_REQUIRE_PROMETHEUS=1: the test then runs (and fails) without them.
    static var required: Bool { getenv("AMP_REQUIRE_PROMETHEUS").map { String(cString: $0) } == "1" }

    func fetch(_ url: String) async -> ToolResult {
        // GET url: "STATUS CONTENT-TYPE" and the body, or the error's status.
        let code = "import sys, urllib.request, urllib.error\ntry:\n    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
            + "    sys.stdout.write('%d %s\\n' % (r.status, r.headers.get('Content-Type')) + r.read().decode())\n"
            + "except urllib.error.HTTPError as e:\n    sys.stdout.write('%d\\n' % e.code)\n"
        return await run("/usr/bin/python3", ["-c", code, url], environment: toolEnvironment())
    }

    @Test("the endpoint serves postgres_exporter's series and amp's; promtool accepts Prometheus's names; a real Prometheus scrapes it; ampctl metrics prints the same",
          .enabled(if: installed || required, "needs prometheus and promtool (apt install prometheus; make test installs it)"))
    func endpoint() async throws {
        let f = AmpdFixture()
        let port = freePort()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[metrics]\nlisten = \"127.0.0.1:\(port)\"\n[backup]\narchive = false\n")
        let served = try await f.ready()
        #expect(served.text.contains("metrics for Prometheus at http://127.0.0.1:\(port)/metrics"), "\(served.text)")
        let url = try #require(served.url)
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")

        let scraped = await fetch("http://127.0.0.1:\(port)/metrics")
        #expect(scraped.output.hasPrefix("200 text/plain; version=0.0.4"), "\(scraped.output.prefix(300))")
        for series in ["pg_up 1", "pg_database_size_bytes{datname=\"postgres\"}", "pg_stat_activity_count{datname=\"postgres\",state=\"active\"}",
                       "pg_stat_database_xact_commit{datid=", "pg_settings_max_connections", "pg_replication_is_replica 0", "amp_state{state=\"ready\"} 1", "amp_health_check_seconds "] {
            #expect(scraped.output.contains(series), "\(series) in \(scraped.output.prefix(2000))")
        }
        #expect(await fetch("http://127.0.0.1:\(port)/").output.hasPrefix("404"))
        let viaCtl = await runIn(f.base, ampctlPath, ["metrics"], environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"]))
        #expect(viaCtl.ok && viaCtl.output.contains("pg_up 1") && viaCtl.output.contains("pg_database_size_bytes"), "\(viaCtl.output.prefix(500))")
        await served.stop()

        // Prometheus's own names: promtool finds nothing.
        writeFile(f.ampDir + "/config.toml", "[metrics]\nlisten = \"127.0.0.1:\(port)\"\nexporter_names = false\n[backup]\narchive = false\n")
        let again = try await f.ready()
        let conventional = await fetch("http://127.0.0.1:\(port)/metrics")
        let body = conventional.output.split(separator: "\n", maxSplits: 1).dropFirst().joined()
        // (the tool's output comes trimmed: the format ends with a line break)
        writeFile(f.base + "/metrics.txt", body.hasSuffix("\n") ? body : body + "\n")
        let lint = await run("/bin/sh", ["-c", "/usr/bin/promtool check metrics < \"$0\"", f.base + "/metrics.txt"], environment: toolEnvironment())
        #expect(lint.ok && lint.output.isEmpty, "promtool: \(lint.output)")
        #expect(body.contains("pg_stat_database_xact_commit_total{") && body.contains("pg_stat_activity_connections{"), "\(body.prefix(1500))")

        // A real Prometheus scrapes it every second; its API returns the series.
        let promDir = f.base + "/prometheus"
        mkdir(promDir, 0o700)
        let promPort = freePort()
        writeFile(promDir + "/prometheus.yml", """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: amp
                static_configs: [{targets: ['127.0.0.1:\(port)']}]
            """)
        let prometheus = try await ChildProcess.spawn(SpawnConfiguration(
            executable: "/usr/bin/prometheus",
            arguments: ["--config.file=\(promDir)/prometheus.yml", "--storage.tsdb.path=\(promDir)/data", "--web.listen-address=127.0.0.1:\(promPort)"],
            environment: toolEnvironment(["HOME": promDir]), workingDirectory: promDir, output: .discard))
        f.defer_ {
            prometheus.signal(SIGKILL)
            let done = DispatchSemaphore(value: 0)
            prometheus.onExit { _ in done.signal() }
            done.wait()
        }
        var answer = ""
        let seen = await eventuallyAsync(timeout: .seconds(60), every: .milliseconds(500)) {
            answer = await fetch("http://127.0.0.1:\(promPort)/api/v1/query?query=pg_database_size_bytes%7Bdatname%3D%22postgres%22%7D").output
            return answer.contains("\"status\":\"success\"") && answer.contains("\"job\":\"amp\"") && answer.contains("\"datname\":\"postgres\"")
        }
        #expect(seen, "Prometheus's answer: \(answer.prefix(500))")
        let up = await fetch("http://127.0.0.1:\(promPort)/api/v1/query?query=up%7Bjob%3D%22amp%22%7D").output
        #expect(up.contains("\"1\"]"), "the target is up: \(up.prefix(400))")
        await again.stop()
    }

    @Test("[metrics] listen on an address in use: exit 78 naming the setting and the address")
    func addressInUse() async throws {
        let f = AmpdFixture()
        let blocker = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(blocker) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let port = freePort()
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(blocker, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        _ = listen(blocker, 1)
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[metrics]\nlisten = \"127.0.0.1:\(port)\"\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(78) && text.contains("cannot listen on 127.0.0.1:\(port) for metrics") && text.contains("config.toml"), "\(text)")
    }
}
